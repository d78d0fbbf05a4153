"""The operators' admin: every page renders, and writes obey the same rules as the API."""

import pytest
from django.urls import reverse

from environments.models import Artifact, Binding, Cluster, Resource
from environments import services as promotion_services
from projects.models import AuditEntry
from promotions.models import Promotion
from projects.models import Membership
from tests.fixtures.domain import digest

MODELS = [
    ("projects", "project"), ("projects", "membership"), ("environments", "cluster"),
    ("environments", "environment"), ("environments", "resource"), ("environments", "artifact"),
    ("promotions", "promotion"),
]


@pytest.fixture
def world(dev_web, staging, prod, make_resource, members):
    staging_web = make_resource(staging, upstream=dev_web)
    prod_web = make_resource(prod, upstream=staging_web, binding=Binding.PIN_DIGEST, pinned=digest("p"))
    promotion_services.artifact_publish(resource=dev_web, digest=digest(1))
    return {"dev_web": dev_web, "staging_web": staging_web, "prod_web": prod_web}


def inline_management(prefix="env_vars", total=0, initial=0):
    return {f"{prefix}-TOTAL_FORMS": str(total), f"{prefix}-INITIAL_FORMS": str(initial),
            f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"}


def resource_post(environment, **overrides):
    data = {
        "environment": environment.pk, "name": "web", "kind": "deployment", "source_type": "image",
        "image": "registry.example.com/shop/web:1", "promote_from": "", "binding": "", "pinned_digest": "",
        "runtime": "", "ports": "[8080]", "replicas": "1", "ingress_host": "", "database_url": "", "schedule": "",
        **inline_management(),
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("app, model", MODELS)
def test_changelist_renders(admin_client, world, app, model):
    response = admin_client.get(reverse(f"admin:{app}_{model}_changelist"))
    assert response.status_code == 200


@pytest.mark.parametrize("app, model", MODELS)
def test_changelist_search_and_filters_render(admin_client, world, app, model):
    response = admin_client.get(reverse(f"admin:{app}_{model}_changelist"), {"q": "web"})
    assert response.status_code == 200


@pytest.mark.parametrize("app, model", MODELS)
def test_change_form_renders(admin_client, world, app, model):
    from django.apps import apps

    obj = apps.get_model(app, model).objects.first()
    response = admin_client.get(reverse(f"admin:{app}_{model}_change", args=[obj.pk]))
    assert response.status_code == 200


@pytest.mark.parametrize("app, model", [m for m in MODELS if m[1] != "promotion"])
def test_add_form_renders(admin_client, world, app, model):
    assert admin_client.get(reverse(f"admin:{app}_{model}_add")).status_code == 200


def test_an_invalid_promotion_is_refused_with_the_message(admin_client, world, dev):
    data = resource_post(dev, name="copy", source_type="promote", image="", promote_from=world["dev_web"].pk, binding="track_latest")
    response = admin_client.post(reverse("admin:environments_resource_add"), data)
    assert response.status_code == 200
    assert "promote into the environment you promote from" in response.content.decode()
    assert not Resource.objects.filter(name="copy").exists()


def test_a_bad_pin_is_refused_next_to_the_field(admin_client, world, staging):
    data = resource_post(staging, name="api", source_type="promote", image="", promote_from=world["dev_web"].pk,
                         binding="pin_digest", pinned_digest="sha256:" + "A" * 64)
    response = admin_client.post(reverse("admin:environments_resource_add"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "64 lower-case hex" in errors["pinned_digest"][0]


def test_a_cycle_is_refused_in_the_change_form(admin_client, world):
    dev_web = world["dev_web"]
    data = resource_post(dev_web.environment, source_type="promote", image="", promote_from=world["prod_web"].pk, binding="track_latest")
    response = admin_client.post(reverse("admin:environments_resource_change", args=[dev_web.pk]), data)
    assert response.status_code == 200
    assert "cycle" in response.context["adminform"].form.errors["promote_from"][0]
    dev_web.refresh_from_db()
    assert dev_web.source_type == "image"


def test_admin_creates_through_the_service(admin_client, world, staging, admin_user):
    data = resource_post(staging, name="api", source_type="promote", image="", promote_from=world["dev_web"].pk,
                         binding="pin_digest", pinned_digest=digest(1), database_url="postgres://x:y@db/z",
                         **inline_management(total=1), **{"env_vars-0-name": "MODE", "env_vars-0-value": "staging", "env_vars-0-secret": ""})
    response = admin_client.post(reverse("admin:environments_resource_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    resource = Resource.objects.get(name="api", environment=staging)
    assert resource.pinned_digest == digest(1) and resource.database_url == "postgres://x:y@db/z"
    assert [(v.name, v.value) for v in resource.env_vars.all()] == [("MODE", "staging")]
    promotion = Promotion.objects.get(resource=resource)
    assert (promotion.reason, promotion.actor, promotion.to_digest) == ("create", admin_user, digest(1))


def test_editing_a_pin_in_the_admin_records_the_promotion(admin_client, world):
    prod_web = world["prod_web"]
    data = resource_post(prod_web.environment, source_type="promote", image="", promote_from=world["staging_web"].pk,
                         binding="pin_digest", pinned_digest=digest(2))
    response = admin_client.post(reverse("admin:environments_resource_change", args=[prod_web.pk]), data)
    assert response.status_code == 302
    prod_web.refresh_from_db()
    assert prod_web.pinned_digest == digest(2)
    assert Promotion.objects.filter(resource=prod_web, reason="pin_edit", to_digest=digest(2)).exists()


def test_secret_values_are_never_rendered(admin_client, world, dev, make_resource, cluster_a):
    resource = make_resource(dev, "api", database_url="postgres://u:hunter2@db/x", env=[{"name": "TOKEN", "value": "s3cr3t-v4lue", "secret": True}])
    page = admin_client.get(reverse("admin:environments_resource_change", args=[resource.pk])).content.decode()
    assert "hunter2" not in page and "s3cr3t-v4lue" not in page
    cluster_a.token = "cluster-t0ken-value"
    cluster_a.save()
    page = admin_client.get(reverse("admin:environments_cluster_change", args=[cluster_a.pk])).content.decode()
    assert "cluster-t0ken-value" not in page and "Currently set" in page


def test_a_blank_credential_keeps_the_stored_one(admin_client, cluster_a):
    cluster_a.token = "keep-me"
    cluster_a.save()
    data = {"name": cluster_a.name, "slug": cluster_a.slug, "api_url": "https://k8s.example.com:6443", "ca_cert": "",
            "token": "", "kubeconfig": "", "registry": "r.example.com", "registry_username": "", "registry_password": ""}
    assert admin_client.post(reverse("admin:environments_cluster_change", args=[cluster_a.pk]), data).status_code == 302
    cluster = Cluster.objects.get(pk=cluster_a.pk)
    assert (cluster.token, cluster.api_url) == ("keep-me", "https://k8s.example.com:6443")


def test_a_bad_kubeconfig_and_url_are_refused(admin_client, cluster_a):
    data = {"name": "c", "slug": "c", "api_url": "ftp://nope", "ca_cert": "", "token": "", "kubeconfig": "{{not yaml",
            "registry": "", "registry_username": "", "registry_password": ""}
    response = admin_client.post(reverse("admin:environments_cluster_add"), data)
    errors = response.context["adminform"].form.errors
    assert "api_url" in errors and "kubeconfig" in errors


def test_publishing_in_the_admin_uses_the_service(admin_client, world):
    dev_web = world["dev_web"]
    response = admin_client.post(reverse("admin:environments_artifact_add"), {"resource": dev_web.pk, "digest": digest(5), "tag": "v5", "repository": ""})
    assert response.status_code == 302
    artifact = Artifact.objects.get(digest=digest(5))
    assert (artifact.sequence, artifact.origin, artifact.repository) == (2, "admin", "registry.example.com/shop/web")


def test_publishing_a_bad_digest_in_the_admin_is_refused(admin_client, world):
    response = admin_client.post(reverse("admin:environments_artifact_add"), {"resource": world["dev_web"].pk, "digest": "sha256:XYZ", "tag": ""})
    assert response.status_code == 200
    assert "digest" in response.context["adminform"].form.errors
    assert not Artifact.objects.filter(digest="sha256:XYZ").exists()


def test_deleting_a_tracked_upstream_in_the_admin_is_refused(admin_client, world):
    dev_web = world["dev_web"]
    response = admin_client.post(
        reverse("admin:environments_resource_changelist"),
        {"action": "delete_selected", "_selected_action": [dev_web.pk], "post": "yes"}, follow=True,
    )
    assert "shop/staging/web promotes from it" in response.content.decode()
    assert Resource.objects.filter(pk=dev_web.pk).exists()


def test_admin_action_promotes_to_the_upstreams_current(admin_client, world):
    prod_web, staging_web = world["prod_web"], world["staging_web"]
    # staging publishes what it applied; until then there is nothing to promote and the action says so.
    response = admin_client.post(reverse("admin:environments_resource_changelist"),
                                 {"action": "promote_upstream_current", "_selected_action": [prod_web.pk]}, follow=True)
    assert "has not published an image yet" in response.content.decode()
    response = admin_client.post(reverse("admin:environments_resource_changelist"),
                                 {"action": "promote_upstream_current", "_selected_action": [world["dev_web"].pk]}, follow=True)
    assert "there is no upstream" in response.content.decode()
    # Once staging runs (and so publishes) a digest, the action pins prod to it, through the service.
    Artifact.objects.create(resource=staging_web, sequence=1, repository="registry.example.com/shop/web",
                            digest=digest(1), origin="promotion", first_published_at=staging_web.created_at)
    response = admin_client.post(reverse("admin:environments_resource_changelist"),
                                 {"action": "promote_upstream_current", "_selected_action": [prod_web.pk]}, follow=True)
    assert "Promoted: 1." in response.content.decode()
    prod_web.refresh_from_db()
    assert prod_web.pinned_digest == digest(1)
    assert Promotion.objects.filter(resource=prod_web, reason="promote", to_digest=digest(1)).exists()


def test_a_staff_user_outside_the_project_cannot_change_it(client, world, make_user):
    from django.contrib.auth.models import Permission

    operator = make_user("operator", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(codename__in=["change_resource", "view_resource"]))
    client.force_login(operator)
    prod_web = world["prod_web"]
    data = resource_post(prod_web.environment, source_type="promote", image="", promote_from=world["staging_web"].pk,
                         binding="pin_digest", pinned_digest=digest(3))
    response = client.post(reverse("admin:environments_resource_change", args=[prod_web.pk]), data)
    # The service's refusal, next to the form, and audited.
    assert "You need the maintainer role in project shop" in response.content.decode()
    assert AuditEntry.objects.filter(action="resource.update", outcome="refused", via="admin", actor=operator).exists()
    prod_web.refresh_from_db()
    assert prod_web.pinned_digest == digest("p")
    Membership.objects.create(project=prod_web.project, user=operator, role="maintainer")
    assert client.post(reverse("admin:environments_resource_change", args=[prod_web.pk]), data).status_code == 302


def test_an_environment_keeps_its_cluster_and_namespace_in_the_admin(admin_client, world, cluster_a, cluster_b):
    prod = world["prod_web"].environment
    response = admin_client.post(reverse("admin:environments_environment_change", args=[prod.pk]), {
        "project": prod.project_id, "name": "production", "slug": "elsewhere", "cluster": cluster_a.pk,
        "namespace": "moved", "protected": "on", "position": prod.position})
    assert response.status_code == 302
    prod.refresh_from_db()
    # Only what environment_update allows changed; moving would strand what runs there.
    assert (prod.name, prod.slug, prod.cluster, prod.namespace) == ("production", "prod", cluster_b, "shop-prod")
    entry = AuditEntry.objects.get(action="environment.update", via="admin")
    assert entry.changes["before"]["name"] == "prod" and entry.changes["after"]["name"] == "production"


def test_a_project_with_environments_is_not_deleted_in_the_admin(admin_client, world):
    project = world["dev_web"].project
    response = admin_client.post(reverse("admin:projects_project_delete", args=[project.pk]), {"post": "yes"}, follow=True)
    assert "still has environments (dev, prod, staging); delete them first" in response.content.decode()
    assert type(project).objects.filter(pk=project.pk).exists()


def test_the_environment_form_offers_the_clusters_its_user_may_see(rf, world, members, admin_user, cluster_a, cluster_b):
    from django.contrib.admin.sites import site

    from environments.models import Environment

    unused = promotion_services.cluster_create(name="cluster-c", slug="cluster-c", api_url="http://127.0.0.1:3")
    model_admin = site._registry[Environment]

    def choices(user):
        request = rf.get("/")
        request.user = user
        field = model_admin.formfield_for_foreignkey(Environment._meta.get_field("cluster"), request)
        return sorted(field.queryset.values_list("slug", flat=True))

    assert choices(admin_user) == ["cluster-a", "cluster-b", "cluster-c"]
    assert choices(members["maintainer"]) == ["cluster-a", "cluster-b"]  # (the admin lets staff in only)
    assert unused.slug not in choices(members["outsider"])


def test_a_staff_maintainer_places_an_environment_on_any_cluster_in_the_admin(client, world, make_user):
    from django.contrib.auth.models import Permission

    from environments.models import Environment

    unused = promotion_services.cluster_create(name="cluster-c", slug="cluster-c", api_url="http://127.0.0.1:3")
    operator = make_user("operator", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(codename__in=["add_environment", "view_environment"]))
    project = world["dev_web"].project
    Membership.objects.create(project=project, user=operator, role="maintainer")
    client.force_login(operator)
    response = client.post(reverse("admin:environments_environment_add"), {
        "project": project.pk, "name": "qa", "slug": "qa", "cluster": unused.pk, "namespace": "shop-qa", "position": ""})
    assert response.status_code == 302, response.content.decode()
    assert Environment.objects.get(slug="qa").cluster == unused
