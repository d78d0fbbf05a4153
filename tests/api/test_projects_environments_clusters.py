"""Projects, members, users, environments and clusters: who may do what, and write-only credentials."""

import pytest

from environments.models import Cluster, Environment
from projects.models import AuditEntry, Membership, Project
from tests.fixtures.api import assert_error, url

ENV = {"slug": "qa", "name": "QA", "cluster": "cluster-a", "namespace": "shop-qa"}


# --- projects and members ---------------------------------------------------------------------


def test_projects_lists_only_yours_with_your_role(api, project, other_project):
    listed = api["developer"].get(url("projects")).json()
    assert [(p["slug"], p["role"]) for p in listed["results"]] == [("shop", "developer")]
    assert {p["slug"] for p in api["admin"].get(url("projects")).json()["results"]} == {"shop", "other"}
    assert_error(api["developer"].get(url("projects", "other")), 404)


@pytest.mark.parametrize("role, status", [("viewer", 403), ("maintainer", 403), ("admin", 201)])
def test_staff_create_projects_and_become_maintainer(api, members, role, status):
    response = api[role].post(url("projects"), {"slug": "new", "name": "New"}, format="json")
    assert response.status_code == status
    if status == 201:
        assert response.json()["role"] == "maintainer"
        assert Membership.objects.get(project__slug="new").role == "maintainer"
        assert AuditEntry.objects.filter(action="project.create", target_repr="New").exists()


@pytest.mark.parametrize("body, field", [({"slug": "Bad Slug", "name": "x"}, "slug"), ({"slug": "shop", "name": "x"}, "slug"), ({"slug": "x"}, "name")])
def test_project_creation_names_the_field(api, project, body, field):
    assert_error(api["admin"].post(url("projects"), body, format="json"), 400, field)


@pytest.mark.parametrize("role, status", [("viewer", 403), ("developer", 403), ("maintainer", 200)])
def test_maintainers_rename_the_project(api, role, status):
    response = api[role].patch(url("projects", "shop"), {"name": "Shop 2"}, format="json")
    assert response.status_code == status
    assert Project.objects.get(slug="shop").name == ("Shop 2" if status == 200 else "Shop")


def test_members(api, members, make_user):
    make_user("newbie")
    assert api["viewer"].get(url("projects", "shop", "members")).json()["count"] == 3
    assert_error(api["developer"].post(url("projects", "shop", "members"), {"username": "newbie", "role": "viewer"}, format="json"), 403)
    created = api["maintainer"].post(url("projects", "shop", "members"), {"username": "newbie", "role": "viewer"}, format="json")
    assert created.status_code == 201 and created.json()["role"] == "viewer"
    changed = api["maintainer"].patch(url("projects", "shop", "members", "newbie"), {"role": "developer"}, format="json")
    assert changed.json()["role"] == "developer"
    assert_error(api["maintainer"].post(url("projects", "shop", "members"), {"username": "ghost", "role": "viewer"}, format="json"), 400, "username")
    assert_error(api["maintainer"].post(url("projects", "shop", "members"), {"username": "newbie", "role": "owner"}, format="json"), 400, "role")
    assert api["maintainer"].delete(url("projects", "shop", "members", "newbie")).status_code == 204
    # The last maintainer stays.
    assert_error(api["maintainer"].patch(url("projects", "shop", "members", "maintainer"), {"role": "viewer"}, format="json"), 400, "role")
    assert AuditEntry.objects.filter(action__startswith="membership.", via="api", outcome="ok").count() == 3
    # Every refusal above is audited too, with the message the caller read.
    refused = AuditEntry.objects.filter(action__startswith="membership.", via="api", outcome="refused")
    assert refused.count() == 3  # "owner" is refused by the body's shape (a 400) before any service
    assert refused.filter(message__contains="You need the maintainer role in project shop to manage members.").exists()


def test_staff_create_users(api):
    assert_error(api["maintainer"].post(url("users"), {"username": "vera", "password": "a-long-passphrase-9"}, format="json"), 403)
    response = api["admin"].post(url("users"), {"username": "vera", "password": "a-long-passphrase-9"}, format="json")
    assert response.status_code == 201 and "password" not in response.json()
    assert_error(api["admin"].post(url("users"), {"username": "vera2", "password": "123"}, format="json"), 400, "password")
    entry = AuditEntry.objects.get(action="user.create", outcome="ok")
    assert "a-long-passphrase" not in str(entry.changes) and entry.changes["after"]["username"] == "vera"


# --- environments -----------------------------------------------------------------------------


@pytest.mark.parametrize("role, status", [("viewer", 403), ("developer", 403), ("maintainer", 201), ("outsider", 404)])
def test_maintainers_add_environments(api, environments, role, status):
    response = api[role].post(url("projects", "shop", "environments"), ENV, format="json")
    assert response.status_code == status
    if status == 201:
        assert response.json() == {**response.json(), "slug": "qa", "cluster": "cluster-a", "protected": False, "position": 3}


@pytest.mark.parametrize("change, field", [
    ({"slug": "dev"}, "slug"), ({"namespace": "shop-dev"}, "namespace"), ({"cluster": "nope"}, "cluster"),
    ({"namespace": "Bad NS"}, "namespace"), ({"protected": "yes"}, "protected"), ({"position": -1}, "position"), ({"colour": "red"}, "colour"),
])
def test_environment_input_names_the_field(api, environments, change, field):
    assert_error(api["maintainer"].post(url("projects", "shop", "environments"), {**ENV, **change}, format="json"), 400, field)


def test_environments_change_and_delete(api, environments, dev_web):
    assert_error(api["developer"].patch(url("projects", "shop", "environments", "staging"), {"protected": True}, format="json"), 403)
    response = api["maintainer"].patch(url("projects", "shop", "environments", "staging"), {"protected": True, "name": "Staging"}, format="json")
    assert response.json()["protected"] is True and Environment.objects.get(slug="staging").protected
    assert_error(api["maintainer"].patch(url("projects", "shop", "environments", "staging"), {"namespace": "x"}, format="json"), 400, "namespace")
    assert api["maintainer"].delete(url("projects", "shop", "environments", "staging")).status_code == 204


def test_an_environment_others_promote_from_is_not_deleted(api, dev_web, staging, make_resource):
    make_resource(staging, upstream=dev_web)
    assert_error(api["maintainer"].delete(url("projects", "shop", "environments", "dev")), 409, "environment")


# --- clusters ---------------------------------------------------------------------------------


CLUSTER = {"slug": "c3", "name": "c3", "api_url": "https://k8s.example.com:6443", "token": "tok-SECRET", "registry_password": "pw-SECRET"}


@pytest.fixture
def cluster_world(environments, other_project, make_user):
    """shop on cluster-a and cluster-b (the `environments` fixture); `other` on cluster-c; cluster-d unused."""
    from environments import services as env_services

    cluster_c = env_services.cluster_create(name="cluster-c", slug="cluster-c", api_url="http://127.0.0.1:3", registry="127.0.0.1:5003")
    env_services.cluster_create(name="cluster-d", slug="cluster-d", api_url="http://127.0.0.1:4")
    env_services.environment_create(project=other_project, name="dev", slug="dev", cluster=cluster_c, namespace="other-dev")
    other_member = make_user("other-maintainer")
    Membership.objects.create(project=other_project, user=other_member, role="maintainer")
    return {"other_member": other_member}


def listed(client) -> list[str]:
    response = client.get(url("clusters"))
    assert response.status_code == 200, response.json()
    return [cluster["slug"] for cluster in response.json()["results"]]


def test_staff_see_every_cluster(api, cluster_world):
    assert listed(api["admin"]) == ["cluster-a", "cluster-b", "cluster-c", "cluster-d"]
    assert api["admin"].get(url("clusters", "cluster-d")).status_code == 200


@pytest.mark.parametrize("role", ["viewer", "developer", "maintainer"])
def test_members_see_only_the_clusters_their_projects_use(api, cluster_world, role):
    assert listed(api[role]) == ["cluster-a", "cluster-b"]
    assert api[role].get(url("clusters", "cluster-b")).json()["slug"] == "cluster-b"


@pytest.mark.parametrize("role", ["viewer", "maintainer", "outsider"])
@pytest.mark.parametrize("slug", ["cluster-c", "cluster-d", "nope"])
def test_a_cluster_you_may_not_see_is_a_404_like_one_that_does_not_exist(api, cluster_world, role, slug):
    body = assert_error(api[role].get(url("clusters", slug)), 404)
    assert body == {"detail": f"No cluster {slug!r}.", "code": "not_found", "errors": {}}


def test_a_member_of_another_project_sees_its_clusters_only(api, cluster_world):
    from tests.fixtures.api import api_client_for

    assert listed(api_client_for(cluster_world["other_member"])) == ["cluster-c"]
    assert listed(api["outsider"]) == []
    assert_error(api["anonymous"].get(url("clusters")), 401)


def test_only_staff_change_clusters(api, cluster_world):
    assert_error(api["maintainer"].post(url("clusters"), CLUSTER, format="json"), 403)
    assert_error(api["maintainer"].patch(url("clusters", "cluster-a"), {"name": "x"}, format="json"), 403)
    # Refused for the role before any lookup: the answer is the same for a cluster the caller can't see.
    assert_error(api["maintainer"].patch(url("clusters", "cluster-c"), {"name": "x"}, format="json"), 403)
    assert_error(api["maintainer"].delete(url("clusters", "cluster-d")), 403)
    assert Cluster.objects.filter(name="x").count() == 0


@pytest.mark.parametrize("slug", ["cluster-c", "cluster-d", "nope"])
def test_a_maintainer_places_environments_only_on_clusters_they_see(api, cluster_world, slug):
    body = assert_error(api["maintainer"].post(url("projects", "shop", "environments"), {**ENV, "cluster": slug}, format="json"), 400, "cluster")
    # An invisible cluster reads exactly like an unknown one.
    assert body["errors"] == {"cluster": [f"No cluster {slug!r}."]}
    assert not Environment.objects.filter(slug="qa").exists()


def test_a_maintainer_may_use_a_cluster_another_of_their_projects_uses(api, cluster_world, maintainer):
    Membership.objects.create(project=Project.objects.get(slug="other"), user=maintainer, role="viewer")
    response = api["maintainer"].post(url("projects", "shop", "environments"), {**ENV, "cluster": "cluster-c"}, format="json")
    assert response.status_code == 201 and response.json()["cluster"] == "cluster-c"


def test_staff_place_environments_on_any_cluster(api, cluster_world):
    response = api["admin"].post(url("projects", "shop", "environments"), {**ENV, "cluster": "cluster-d"}, format="json")
    assert response.status_code == 201 and response.json()["cluster"] == "cluster-d"


def test_cluster_credentials_are_write_only_and_encrypted(api, cluster_a):
    from django.db import connection

    response = api["admin"].post(url("clusters"), CLUSTER, format="json")
    assert response.status_code == 201
    assert response.json()["token"] == "set" and response.json()["kubeconfig"] == "not set"
    assert b"SECRET" not in response.content and b"SECRET" not in api["admin"].get(url("clusters")).content
    with connection.cursor() as cursor:
        cursor.execute("SELECT token, registry_password FROM environments_cluster WHERE slug = 'c3'")
        assert all("SECRET" not in value for value in cursor.fetchone())
    assert Cluster.objects.get(slug="c3").token == "tok-SECRET"
    assert "SECRET" not in str(AuditEntry.objects.get(action="cluster.create", outcome="ok", via="api").changes)
    # "set" keeps, "" clears.
    api["admin"].patch(url("clusters", "c3"), {"token": "set", "registry_password": ""}, format="json")
    cluster = Cluster.objects.get(slug="c3")
    assert (cluster.token, cluster.registry_password) == ("tok-SECRET", "")


@pytest.mark.parametrize("change, field", [({"api_url": "ftp://x"}, "api_url"), ({"kubeconfig": "not: [yaml"}, "kubeconfig"), ({"slug": "cluster-a"}, "slug")])
def test_cluster_input_names_the_field(api, cluster_a, change, field):
    assert_error(api["admin"].post(url("clusters"), {**CLUSTER, **change}, format="json"), 400, field)


def test_a_cluster_in_use_is_not_deleted(api, environments, cluster_b):
    assert_error(api["admin"].delete(url("clusters", "cluster-a")), 409, "cluster")
    Environment.objects.filter(cluster=cluster_b).delete()
    assert api["admin"].delete(url("clusters", "cluster-b")).status_code == 204


def test_a_viewer_token_changes_nothing(api, environments, dev_web, cluster_a, members, make_user):
    """Whatever a viewer sends, nothing in the database changes."""
    from environments.models import Artifact, Resource

    viewer = api["viewer"]
    before = (Resource.objects.count(), Artifact.objects.count(), Environment.objects.count(), Membership.objects.count())
    etag = viewer.get("/api/v1/projects/shop/environments/dev/resources/web/").headers["ETag"]
    attempts = [
        viewer.post("/api/v1/projects/shop/environments/dev/resources/", {"name": "x", "source": {"type": "image", "image": "a/b:1"}}, format="json"),
        viewer.patch("/api/v1/projects/shop/environments/dev/resources/web/", {"config": {"replicas": 3}}, format="json", HTTP_IF_MATCH=etag),
        viewer.delete("/api/v1/projects/shop/environments/dev/resources/web/", HTTP_IF_MATCH=etag),
        viewer.post("/api/v1/projects/shop/environments/dev/resources/web/artifacts/", {"digest": "sha256:" + "a" * 64}, format="json"),
        viewer.post(url("projects", "shop", "environments"), ENV, format="json"),
        viewer.patch(url("projects", "shop", "environments", "dev"), {"protected": True}, format="json"),
        viewer.delete(url("projects", "shop", "environments", "dev")),
        viewer.post(url("projects", "shop", "members"), {"username": "viewer", "role": "maintainer"}, format="json"),
        viewer.patch(url("projects", "shop", "members", "viewer"), {"role": "maintainer"}, format="json"),
        viewer.patch(url("projects", "shop"), {"name": "mine"}, format="json"),
        viewer.post(url("projects"), {"slug": "mine", "name": "mine"}, format="json"),
        viewer.post(url("clusters"), CLUSTER, format="json"),
        viewer.post(url("users"), {"username": "x", "password": "a-long-passphrase-9"}, format="json"),
    ]
    assert {r.status_code for r in attempts} == {403}, [(r.status_code, r.json()) for r in attempts]
    assert before == (Resource.objects.count(), Artifact.objects.count(), Environment.objects.count(), Membership.objects.count())
    assert not AuditEntry.objects.filter(via="api", outcome="ok").exists()
    assert AuditEntry.objects.filter(via="api", outcome="refused").count() == len(attempts)
