"""Resources through the API: each role, each source and binding, the rules of the foundation, ETags."""

import pytest

from environments.models import Binding, EnvVar, Resource
from projects.models import AuditEntry
from promotions.models import Promotion
from tests.fixtures.api import assert_error, resource_url
from tests.fixtures.domain import digest

IMAGE = "registry.example.com/shop/api:1.0"


def image_body(name="api", **config):
    return {"name": name, "source": {"type": "image", "image": IMAGE}, "config": config}


def promote_body(name="web", env="dev", resource="web", **source):
    return {"name": name, "source": {"type": "promote", "environment": env, "resource": resource, **source}}


def etag_of(client, env, name):
    response = client.get(resource_url(env, name))
    assert response.status_code == 200
    return response.headers["ETag"]


# --- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "developer", "maintainer", "admin"])
def test_every_member_reads(api, dev, dev_web, role):
    listed = api[role].get(resource_url(dev))
    assert listed.status_code == 200 and listed.json()["count"] == 1
    one = api[role].get(resource_url(dev, "web"))
    assert one.status_code == 200 and one.headers["ETag"]
    assert one.json()["source"] == {"type": "image", "image": "registry.example.com/shop/web:1.0"}
    assert set(one.json()) >= {"name", "kind", "source", "config", "status"}


def test_outsiders_and_strangers_get_404_not_403(api, dev, dev_web, other_project):
    for path in (resource_url(dev), resource_url(dev, "web"), resource_url(dev, "web", "artifacts"), "/api/v1/projects/shop/"):
        assert_error(api["outsider"].get(path), 404)
    body = assert_error(api["outsider"].patch(resource_url(dev, "web"), {}, format="json"), 404)
    assert "shop" not in body["detail"]
    assert_error(api["anonymous"].get(resource_url(dev, "web")), 401)


def test_a_promoted_resource_reads_as_the_contract_says(api, dev_web, staging, prod, make_resource):
    make_resource(staging, upstream=dev_web)
    make_resource(prod, upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=digest("p"))
    track = api["viewer"].get(resource_url(staging, "web")).json()
    pin = api["viewer"].get(resource_url(prod, "web")).json()
    assert track["source"] == {"type": "promote", "environment": "dev", "resource": "web", "binding": "track_latest", "digest": None}
    assert pin["source"]["binding"] == "pin_digest" and pin["source"]["digest"] == digest("p")
    assert set(pin["status"]) == {"digest", "image", "running_digest", "healthy_at", "failed_digest", "rollout", "display",
                                  "phase", "message", "reconciled_at", "watch", "protection"}
    assert set(pin["status"]["rollout"]) == {"state", "ready", "total", "summary"}
    assert {"follow", "soak_seconds", "rollback_on_failure", "progress_deadline_seconds"} <= set(pin["config"])


def test_secrets_never_come_back(api, dev):
    response = api["developer"].post(resource_url(dev), image_body(
        database_url="postgres://u:hunter2@db/app",
        env=[{"name": "MODE", "value": "dev"}, {"name": "API_KEY", "value": "s3cret", "secret": True}],
    ), format="json")
    assert response.status_code == 201, response.json()
    for body in (response.content, api["viewer"].get(resource_url(dev, "api")).content, api["viewer"].get(resource_url(dev)).content):
        assert b"hunter2" not in body and b"s3cret" not in body
    config = response.json()["config"]
    assert config["database_url"] == "set"
    assert config["env"] == [
        {"name": "API_KEY", "value": None, "secret": True, "set": True},
        {"name": "MODE", "value": "dev", "secret": False, "set": True},
    ]
    entry = AuditEntry.objects.get(action="resource.create")
    assert "hunter2" not in str(entry.changes) and "s3cret" not in str(entry.changes)


# --- creating ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role, env, status", [
    ("viewer", "dev", 403), ("developer", "dev", 201), ("maintainer", "dev", 201),
    ("developer", "prod", 403), ("maintainer", "prod", 201), ("outsider", "dev", 404), ("admin", "prod", 201),
])
def test_who_creates_where(api, environments, role, env, status):
    response = api[role].post(resource_url(environments[env]), image_body(), format="json")
    assert response.status_code == status, response.json()
    assert Resource.objects.filter(name="api").exists() == (status == 201)


def test_it_creates_each_source_and_binding(api, dev_web, staging, prod):
    maintainer = api["maintainer"]
    track = maintainer.post(resource_url(staging), promote_body(), format="json")
    pin = maintainer.post(resource_url(prod), promote_body(env="staging", digest=digest(1)), format="json")
    explicit = maintainer.post(resource_url(prod), promote_body("web2", binding="pin_digest", digest=digest(2)), format="json")
    assert (track.status_code, pin.status_code, explicit.status_code) == (201, 201, 201)
    assert track.json()["source"]["binding"] == "track_latest"
    assert pin.json()["source"] == {"type": "promote", "environment": "staging", "resource": "web", "binding": "pin_digest", "digest": digest(1)}
    assert Resource.objects.get(environment=prod, name="web").promote_from.environment == staging
    assert track.headers["ETag"]


def test_an_image_by_digest_is_published_at_once(api, dev):
    ref = "registry.example.com/shop/api@" + digest("x")
    response = api["developer"].post(resource_url(dev), {"name": "api", "source": {"type": "image", "image": ref}}, format="json")
    assert response.status_code == 201
    assert Promotion.objects.get(resource__name="api").to_digest == digest("x")


@pytest.mark.parametrize("body, field", [
    # The foundation's rules, named by the field the client sent.
    (image_body(name="Bad_Name"), "name"),
    (image_body(name="a" * 64), "name"),
    ({"name": "api", "source": {"type": "image", "image": "UPPER/case:tag"}}, "source.image"),
    ({"name": "api", "source": {"type": "image", "image": ""}}, "source.image"),
    ({"name": "api", "source": {"type": "image"}}, "source.image"),
    (image_body(ports=[0]), "config.ports"),
    (image_body(ports=[80, 80]), "config.ports"),
    (image_body(ports=[{"port": 80, "protocol": "HTTP"}]), "config.ports"),
    (image_body(replicas=1001), "config.replicas"),
    (image_body(ingress_host="Not A Host"), "config.ingress_host"),
    (image_body(runtime="Bad_Runtime"), "config.runtime"),
    (image_body(env=[{"name": "1BAD", "value": "x"}]), "config.env"),
    (image_body(env=[{"name": "DATABASE_URL", "value": "x"}]), "config.env"),
    (image_body(schedule="* * * * *"), "config.schedule"),
    ({**image_body(), "kind": "cronjob"}, "config.schedule"),
    (promote_body(env="dev", resource="web", binding="pin_digest"), "source.digest"),
    (promote_body(digest="sha256:abc"), "source.digest"),
    (promote_body(digest="sha256:" + "A" * 64), "source.digest"),
    (promote_body(binding="track_latest", digest=digest(1)), "source.digest"),
    ({**promote_body(), "kind": "cronjob", "config": {"schedule": "* * * * *"}}, "kind"),
    (promote_body(env="staging", resource="web"), "source.resource"),  # into the environment it promotes from
    (promote_body(env="nope"), "source.environment"),
    (promote_body(resource="nope"), "source.resource"),
    ({"name": "web", "source": {"type": "promote"}}, "source.environment"),
    ({"name": "web", "source": {"type": "promote", "environment": "dev", "resource": "web", "image": IMAGE}}, "source.image"),
    ({"name": "web", "source": {"type": "image", "image": IMAGE, "binding": "track_latest"}}, "source.binding"),
    # Wrong types and shapes.
    ({"name": 5, "source": {"type": "image", "image": IMAGE}}, "name"),
    (image_body(replicas="3"), "config.replicas"),
    (image_body(replicas=True), "config.replicas"),
    (image_body(replicas=2.5), "config.replicas"),
    (image_body(ports="80"), "config.ports"),
    (image_body(env={"A": "b"}), "config.env"),
    (image_body(env=[{"name": "A", "value": 5}]), "config.env.0.value"),
    (image_body(env=[{"name": "A", "secret": "yes"}]), "config.env.0.secret"),
    ({"name": "api", "source": "image"}, "source"),
    ({"name": "api", "source": {"type": "docker", "image": IMAGE}}, "source.type"),
    ({"name": "api", "source": {"type": "image", "image": IMAGE}, "config": None}, "config"),
    ({"name": "api"}, "source"),
    ({"source": {"type": "image", "image": IMAGE}}, "name"),
    # Unknown fields, at any depth.
    ({**image_body(), "replicas": 2}, "replicas"),
    (image_body(cpu=2), "config.cpu"),
    ({"name": "api", "source": {"type": "image", "image": IMAGE, "tag": "x"}}, "source.tag"),
    (image_body(env=[{"name": "A", "value": "b", "secrets": True}]), "config.env.0.secrets"),
])
def test_bad_input_is_400_naming_the_field(api, staging, dev_web, body, field):
    before = Resource.objects.count()
    assert_error(api["maintainer"].post(resource_url(staging), body, format="json"), 400, field)
    assert Resource.objects.count() == before


def test_a_duplicate_name_is_refused(api, dev, dev_web):
    body = assert_error(api["developer"].post(resource_url(dev), image_body("web"), format="json"), 400, "name")
    assert "already exists" in body["errors"]["name"][0]


def test_a_resource_of_another_project_cannot_be_the_source(api, staging, other_project, cluster_a, make_resource):
    from environments import services

    theirs = services.environment_create(project=other_project, name="dev", slug="odev", cluster=cluster_a, namespace="other-dev")
    make_resource(theirs, "secret-app")
    body = assert_error(
        api["maintainer"].post(resource_url(staging), promote_body(env="odev", resource="secret-app"), format="json"),
        400, "source.environment",
    )
    assert "other" not in body["detail"]


def test_cycles_are_refused(api, dev_web, staging, make_resource):
    make_resource(staging, upstream=dev_web)
    etag = etag_of(api["maintainer"], dev_web.environment, "web")
    response = api["maintainer"].patch(
        resource_url(dev_web.environment, "web"), {"source": {"type": "promote", "environment": "staging", "resource": "web"}},
        format="json", HTTP_IF_MATCH=etag,
    )
    body = assert_error(response, 400, "source.resource")
    assert "cycle" in body["errors"]["source.resource"][0]


# --- changing ---------------------------------------------------------------------------------


@pytest.fixture
def chain(dev_web, staging, prod, make_resource):
    return {
        "track": make_resource(staging, upstream=dev_web),
        "pin": make_resource(prod, upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=digest("p")),
    }


@pytest.mark.parametrize("role, env, change, status", [
    ("viewer", "dev", {"config": {"replicas": 2}}, 403),
    ("developer", "dev", {"config": {"replicas": 2}}, 200),
    ("developer", "staging", {"config": {"replicas": 2}}, 200),
    ("developer", "staging", {"source": {"binding": "pin_digest", "digest": digest(9)}}, 403),  # pins: maintainers
    ("maintainer", "staging", {"source": {"binding": "pin_digest", "digest": digest(9)}}, 200),
    ("developer", "prod", {"config": {"replicas": 2}}, 403),  # protected
    ("maintainer", "prod", {"config": {"replicas": 2}}, 200),
    ("maintainer", "prod", {"source": {"digest": digest(9)}}, 200),
    ("maintainer", "prod", {"source": {"binding": "track_latest"}}, 200),
    ("outsider", "dev", {"config": {"replicas": 2}}, 404),
])
def test_who_changes_what(api, environments, chain, role, env, change, status):
    environment = environments[env]
    etag = etag_of(api["maintainer"], environment, "web")
    response = api[role].patch(resource_url(environment, "web"), change, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == status, response.json()
    if status == 200:
        assert response.headers["ETag"] != etag
        assert AuditEntry.objects.filter(action="resource.update", target_repr=f"shop/{env}/web").exists()
    else:
        assert etag_of(api["maintainer"], environment, "web") == etag


def test_pinning_records_a_promotion_and_moves_nothing_else(api, prod, chain):
    etag = etag_of(api["maintainer"], prod, "web")
    response = api["maintainer"].patch(resource_url(prod, "web"), {"source": {"digest": digest(9)}}, format="json", HTTP_IF_MATCH=etag)
    assert response.json()["source"]["digest"] == digest(9)
    promotion = Promotion.objects.filter(resource=chain["pin"]).latest("id")
    assert (promotion.reason, promotion.to_digest, promotion.actor.username) == ("pin_edit", digest(9), "maintainer")
    assert response.json()["config"]["replicas"] == 1


def test_switching_a_pin_to_track_latest_clears_the_digest(api, prod, chain):
    etag = etag_of(api["maintainer"], prod, "web")
    response = api["maintainer"].patch(resource_url(prod, "web"), {"source": {"binding": "track_latest"}}, format="json", HTTP_IF_MATCH=etag)
    assert response.json()["source"]["digest"] is None
    assert Resource.objects.get(pk=chain["pin"].pk).binding == Binding.TRACK_LATEST


def test_config_changes_keep_secrets_unless_given(api, dev):
    api["developer"].post(resource_url(dev), image_body(database_url="postgres://a", env=[{"name": "K", "value": "v1", "secret": True}]), format="json")
    resource = Resource.objects.get(name="api")
    etag = etag_of(api["developer"], dev, "api")
    # Sending back what GET returned changes nothing: masks and null secrets keep what is stored.
    current = api["developer"].get(resource_url(dev, "api")).json()
    response = api["developer"].patch(resource_url(dev, "api"), current, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 200, response.json()
    assert response.headers["ETag"] == etag
    resource.refresh_from_db()
    assert resource.database_url == "postgres://a" and EnvVar.objects.get(resource=resource).value == "v1"
    response = api["developer"].patch(resource_url(dev, "api"), {"config": {"database_url": None, "env": [{"name": "K", "value": "v2", "secret": True}]}}, format="json", HTTP_IF_MATCH=etag)
    resource.refresh_from_db()
    assert resource.database_url == "" and EnvVar.objects.get(resource=resource).value == "v2"
    assert response.json()["config"]["database_url"] == "not set"


@pytest.mark.parametrize("change, field", [
    ({"name": "other"}, "name"),
    ({"kind": "cronjob"}, "kind"),
    ({"config": {"replicas": -1}}, "config.replicas"),
    ({"config": {"ports": [70000]}}, "config.ports"),
    ({"config": {"soak_seconds": -1}}, "config.soak_seconds"),
    ({"config": {"soak_seconds": "10"}}, "config.soak_seconds"),
    ({"config": {"progress_deadline_seconds": 0}}, "config.progress_deadline_seconds"),
    ({"config": {"follow": "latest"}}, "config.follow"),
    ({"config": {"rollback_on_failure": "yes"}}, "config.rollback_on_failure"),
    ({"source": {"digest": "latest"}}, "source.digest"),
    ({"source": {"type": "image"}}, "source.image"),
    ({"source": {"environment": "staging"}}, "source.resource"),  # into its own environment
    ({"status": {"phase": "ready"}, "bogus": 1}, "bogus"),
])
def test_bad_changes_are_400_naming_the_field(api, staging, chain, change, field):
    etag = etag_of(api["maintainer"], staging, "web")
    assert_error(api["maintainer"].patch(resource_url(staging, "web"), change, format="json", HTTP_IF_MATCH=etag), 400, field)
    assert etag_of(api["maintainer"], staging, "web") == etag


# --- the concurrency guard ----------------------------------------------------------------------


def test_a_change_needs_if_match(api, prod, chain):
    body = assert_error(api["maintainer"].patch(resource_url(prod, "web"), {"source": {"digest": digest(9)}}, format="json"), 428, "If-Match")
    assert "ETag" in body["detail"]
    assert_error(api["maintainer"].delete(resource_url(prod, "web")), 428, "If-Match")
    assert Resource.objects.get(pk=chain["pin"].pk).pinned_digest == digest("p")


def test_two_automations_cannot_overwrite_each_others_pin(api, prod, chain, admin_user):
    first, second = api["maintainer"], api["admin"]
    etag = etag_of(first, prod, "web")
    assert etag_of(second, prod, "web") == etag
    assert first.patch(resource_url(prod, "web"), {"source": {"digest": digest("a")}}, format="json", HTTP_IF_MATCH=etag).status_code == 200
    stale = second.patch(resource_url(prod, "web"), {"source": {"digest": digest("b")}}, format="json", HTTP_IF_MATCH=etag)
    body = assert_error(stale, 412, "If-Match")
    assert stale.headers["ETag"] in body["detail"]
    assert Resource.objects.get(pk=chain["pin"].pk).pinned_digest == digest("a")
    retry = second.patch(resource_url(prod, "web"), {"source": {"digest": digest("b")}}, format="json", HTTP_IF_MATCH=stale.headers["ETag"])
    assert retry.status_code == 200


def test_if_match_star_overwrites_deliberately(api, prod, chain):
    response = api["maintainer"].patch(resource_url(prod, "web"), {"source": {"digest": digest("s")}}, format="json", HTTP_IF_MATCH="*")
    assert response.status_code == 200


def test_status_changes_do_not_change_the_etag(api, staging, chain):
    etag = etag_of(api["viewer"], staging, "web")
    Resource.objects.filter(pk=chain["track"].pk).update(phase="ready", current_digest=digest(1), message="ok")
    assert etag_of(api["viewer"], staging, "web") == etag


# --- deleting ---------------------------------------------------------------------------------


def test_an_upstream_with_dependants_cannot_be_deleted(api, dev, chain):
    etag = etag_of(api["maintainer"], dev, "web")
    body = assert_error(api["maintainer"].delete(resource_url(dev, "web"), HTTP_IF_MATCH=etag), 409, "resource")
    assert "shop/staging/web" in body["detail"] and "shop/prod/web" in body["detail"]
    assert Resource.objects.filter(environment=dev, name="web").exists()


@pytest.mark.parametrize("role, env, status", [
    ("viewer", "staging", 403), ("developer", "staging", 204), ("developer", "prod", 403), ("maintainer", "prod", 204),
])
def test_who_deletes(api, environments, chain, role, env, status):
    environment = environments[env]
    etag = etag_of(api["maintainer"], environment, "web")
    response = api[role].delete(resource_url(environment, "web"), HTTP_IF_MATCH=etag)
    assert response.status_code == status
    assert Resource.objects.filter(environment=environment, name="web").exists() == (status != 204)
    if status == 204:
        assert AuditEntry.objects.filter(action="resource.delete", target_repr=f"shop/{env}/web").exists()


def test_filters(api, dev, chain, staging):
    assert api["viewer"].get(resource_url(staging) + "?source=promote&binding=track_latest").json()["count"] == 1
    assert api["viewer"].get(resource_url(staging) + "?binding=pin_digest").json()["count"] == 0
    assert_error(api["viewer"].get(resource_url(staging) + "?binding=sometimes"), 400, "binding")


def test_rollout_settings_are_changed_through_the_api(api, staging, chain):
    etag = etag_of(api["maintainer"], staging, "web")
    change = {"config": {"follow": "published", "soak_seconds": 300, "rollback_on_failure": True,
                         "progress_deadline_seconds": 120}}
    response = api["maintainer"].patch(resource_url(staging, "web"), change, format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 200, response.json()
    config = response.json()["config"]
    assert {k: config[k] for k in change["config"]} == change["config"]

