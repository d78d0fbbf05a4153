"""The registry notification receiver: authenticated, strict about its input, publishes pushes by tag."""

import json
import time
import uuid

import pytest
from django.db import connection

from environments.models import Artifact, Binding
from promotions.models import Promotion
from tests.fixtures.domain import digest

TOKEN = "hook-s3cret"
URL = "/hooks/registry/?registry=registry.a.example"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(autouse=True)
def webhook_token(settings):
    settings.HOIST_WEBHOOK_TOKEN = TOKEN


def event(repository="shop/web", tag="main", digest_=None, media_type=MANIFEST, action="push", id_=None, timestamp=None):
    extra = {"timestamp": timestamp} if timestamp else {}
    return {"id": id_ or uuid.uuid4().hex, **extra, "action": action, "target": {"mediaType": media_type, "digest": digest_ or digest(1),
                                                     "repository": repository, "tag": tag},
            "request": {"host": "registry.a.example"}}


def post(client, body, token=TOKEN, url=URL):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(url, data=data, content_type="application/vnd.docker.distribution.events.v1+json", **headers)


@pytest.fixture
def web(dev, make_resource):
    return make_resource(dev, "web", image="registry.a.example/shop/web:main")


def test_a_push_of_the_followed_tag_publishes(client, web, staging, make_resource):
    downstream = make_resource(staging, upstream=web)
    response = post(client, {"events": [event()]})
    assert response.status_code == 202
    assert response.json()["published"] == [{"resource": "shop/dev/web", "digest": digest(1), "sequence": 1}]
    artifact = Artifact.objects.get(resource=web)
    assert (artifact.origin, artifact.tag, artifact.repository) == ("webhook", "main", "registry.a.example/shop/web")
    assert Promotion.objects.filter(resource=web, reason="publish", to_digest=digest(1)).exists()
    assert downstream.binding == Binding.TRACK_LATEST  # follows on the upstream's reconcile


def test_a_redelivered_event_publishes_once(client, web):
    post(client, {"events": [event()]})
    post(client, {"events": [event()]})
    assert Artifact.objects.filter(resource=web).count() == 1


@pytest.mark.parametrize("token", [None, "wrong", ""])
def test_a_bad_secret_is_401_and_publishes_nothing(client, web, token):
    response = post(client, {"events": [event()]}, token=token)
    assert response.status_code == 401
    assert "authorization" in response.json()["errors"]
    assert not Artifact.objects.exists()


def test_the_receiver_is_closed_without_a_configured_token(client, web, settings):
    settings.HOIST_WEBHOOK_TOKEN = ""
    assert post(client, {"events": [event()]}, token="").status_code == 401


@pytest.mark.parametrize("body", ["{not json", "[]", json.dumps({"events": "x"}), json.dumps({"nope": []}), b"\xff\xfe"])
def test_garbage_is_400(client, web, body):
    response = post(client, body)
    assert response.status_code == 400
    assert "events" in response.json()["errors"]
    assert not Artifact.objects.exists()


def test_a_huge_body_is_413(client, web):
    response = post(client, json.dumps({"events": [], "pad": "x" * (1024 * 1024 + 10)}))
    assert response.status_code == 413


@pytest.mark.parametrize(
    "evt",
    [
        event(repository="other/repo"),                                      # no resource uses it
        event(tag="feature-x"),                                              # another tag
        event(tag=""),                                                       # pushed by digest
        event(media_type="application/vnd.docker.image.rootfs.diff.tar.gzip"),  # a blob
        event(action="pull"),
        event(digest_="sha256:XYZ"),
    ],
)
def test_events_nobody_follows_are_ignored_with_202(client, web, evt):
    response = post(client, {"events": [evt]})
    assert response.status_code == 202
    assert response.json() == {"published": [], "ignored": 1}
    assert not Artifact.objects.exists()


def test_another_registrys_repository_of_the_same_name_is_not_confused(client, web):
    response = post(client, {"events": [event()]}, url="/hooks/registry/?registry=registry.b.example")
    assert response.json()["published"] == []


def test_only_get_is_refused(client):
    assert client.get("/hooks/registry/").status_code == 405


@pytest.mark.registry
@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="a live server thread writing while the test polls deadlocks SQLite's in-memory test database")
def test_a_real_registry_push_publishes_end_to_end(live_server, registry_factory, transactional_db, project, cluster_a, settings):
    """docker-registry sends its own notification to a live Hoist; nothing is faked."""
    from environments import services as env_services
    from tests.fixtures.registry import make_image

    settings.HOIST_WEBHOOK_TOKEN = TOKEN
    server = registry_factory(notify_url=f"{live_server.url}/hooks/registry/?registry=PLACEHOLDER", notify_token=TOKEN)
    # The registry's own host is known only once it runs: restart it with the real URL.
    server.stop()
    server.notify_url = f"{live_server.url}/hooks/registry/?registry={server.host}"
    server.start()
    dev = env_services.environment_create(project=project, name="dev", slug="dev", cluster=cluster_a, namespace="shop-dev")
    web = env_services.resource_create(environment=dev, name="web", image=f"{server.host}/shop/web:main")
    pushed = server.pusher().push_image("shop/web", make_image((1024,), seed=3), tag="main")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not Artifact.objects.filter(resource=web).exists():
        time.sleep(0.1)
    artifact = Artifact.objects.get(resource=web)
    assert (artifact.digest, artifact.origin, artifact.tag) == (pushed, "webhook", "main")


def test_a_replayed_event_never_rolls_a_tag_back(client, web, staging, make_resource):
    """push D1, push D2, replay D1 (the same event, or a copy with a new id): nothing moves back."""
    first = event(digest_=digest(1), id_="push-1", timestamp="2026-11-30T10:00:00Z")
    second = event(digest_=digest(2), id_="push-2", timestamp="2026-11-30T10:05:00Z")
    post(client, {"events": [first]})
    post(client, {"events": [second]})
    assert post(client, {"events": [first]}).json() == {"published": [], "ignored": 1}  # same id
    copy = {**first, "id": "push-1-again"}
    assert post(client, {"events": [copy]}).json() == {"published": [], "ignored": 1}  # older than the tag's head
    assert list(Artifact.objects.filter(resource=web).order_by("sequence").values_list("digest", flat=True)) == [
        digest(1), digest(2)]
    # A genuine push of the old image again (a person moving the tag back) is newer: it publishes.
    again = event(digest_=digest(1), id_="push-3", timestamp="2026-11-30T10:10:00Z")
    assert len(post(client, {"events": [again]}).json()["published"]) == 1

