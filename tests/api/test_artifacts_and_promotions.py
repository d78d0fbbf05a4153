"""Publishing through the API, and the promotion history."""

import pytest

from environments.models import Artifact, Binding
from projects.models import AuditEntry
from promotions.models import Promotion
from tests.fixtures.api import assert_error, resource_url, url
from tests.fixtures.domain import digest


@pytest.fixture
def chain(dev_web, staging, prod, make_resource):
    return {
        "track": make_resource(staging, upstream=dev_web),
        "pin": make_resource(prod, upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=digest("p")),
    }


@pytest.mark.parametrize("role, status", [("viewer", 403), ("developer", 201), ("maintainer", 201), ("outsider", 404), ("anonymous", 401)])
def test_who_publishes(api, dev, dev_web, role, status):
    response = api[role].post(resource_url(dev, "web", "artifacts"), {"digest": digest(1), "tag": "1.1"}, format="json")
    assert response.status_code == status
    assert Artifact.objects.filter(resource=dev_web).exists() == (status == 201)


def test_publishing_answers_the_artifact_and_queues_the_promotion(api, dev, dev_web, chain):
    response = api["developer"].post(resource_url(dev, "web", "artifacts"), {"digest": digest(1), "tag": "1.1"}, format="json")
    assert response.json() == {
        **response.json(), "sequence": 1, "digest": digest(1), "tag": "1.1", "origin": "api", "published_by": "developer",
        "repository": "registry.example.com/shop/web", "reference": "registry.example.com/shop/web@" + digest(1),
    }
    assert Promotion.objects.get(resource=dev_web).reason == "publish"
    entry = AuditEntry.objects.get(action="artifact.publish")
    assert (entry.actor.username, entry.project.slug, entry.changes["digest"]) == ("developer", "shop", digest(1))
    listed = api["viewer"].get(resource_url(dev, "web", "artifacts")).json()
    assert [a["sequence"] for a in listed["results"]] == [1]


@pytest.mark.parametrize("body, field", [
    ({}, "digest"),
    ({"tag": ""}, "digest"),
    ({"tag": "no spaces"}, "tag"),
    ({"digest": "sha256:abc"}, "digest"),
    ({"digest": "sha256:" + "F" * 64}, "digest"),
    ({"digest": 7}, "digest"),
    ({"digest": digest(1), "tag": "no spaces"}, "tag"),
    ({"digest": digest(1), "repository": "registry.example.com/shop/web:1.0"}, "repository"),
    ({"digest": digest(1), "extra": True}, "extra"),
])
def test_bad_publishes_are_400_naming_the_field(api, dev, dev_web, body, field):
    assert_error(api["developer"].post(resource_url(dev, "web", "artifacts"), body, format="json"), 400, field)
    assert not Artifact.objects.exists()


def test_publishing_to_a_promoted_resource_is_refused(api, staging, chain):
    body = assert_error(api["maintainer"].post(resource_url(staging, "web", "artifacts"), {"digest": digest(1)}, format="json"), 400, "resource")
    assert "upstream" in body["detail"]


def test_the_history_filters(api, dev, prod, dev_web, chain):
    api["developer"].post(resource_url(dev, "web", "artifacts"), {"digest": digest(1)}, format="json")
    etag = api["maintainer"].get(resource_url(prod, "web")).headers["ETag"]
    api["maintainer"].patch(resource_url(prod, "web"), {"source": {"digest": digest(1)}}, format="json", HTTP_IF_MATCH=etag)
    everything = api["viewer"].get(url("projects", "shop", "promotions")).json()
    assert everything["count"] == Promotion.objects.count() >= 3
    in_prod = api["viewer"].get(url("projects", "shop", "promotions") + "?environment=prod&reason=pin_edit").json()
    assert [(p["environment"], p["resource"], p["to_digest"], p["actor"]) for p in in_prod["results"]] == [("prod", "web", digest(1), "maintainer")]
    queued = api["viewer"].get(url("projects", "shop", "promotions") + "?status=queued&status=superseded&resource=web").json()
    assert queued["count"] == Promotion.objects.filter(status__in=["queued", "superseded"]).count() >= 3
    assert api["viewer"].get(url("projects", "shop", "promotions") + "?status=failed").json()["count"] == 0
    assert_error(api["viewer"].get(url("projects", "shop", "promotions") + "?status=lost"), 400, "status")
    assert_error(api["viewer"].get(url("projects", "shop", "promotions") + "?queued_after=yesterday"), 400, "queued_after")
    one = in_prod["results"][0]
    assert api["viewer"].get(url("projects", "shop", "promotions", one["id"])).json() == one
    history = api["viewer"].get(resource_url(prod, "web", "promotions")).json()
    assert history["results"][0]["id"] == one["id"]


def test_history_of_another_project_is_404(api, dev, dev_web, other_project, make_user):
    from projects.models import Membership

    api["developer"].post(resource_url(dev, "web", "artifacts"), {"digest": digest(1)}, format="json")
    promotion = Promotion.objects.get()
    assert_error(api["outsider"].get(url("projects", "shop", "promotions")), 404)
    assert_error(api["outsider"].get(url("projects", "shop", "promotions", promotion.pk)), 404)
    Membership.objects.create(project=other_project, user=make_user("o2"), role="maintainer")
    # A member of another project can't reach this project's promotion through theirs.
    from tests.fixtures.api import api_client_for
    from django.contrib.auth import get_user_model

    client = api_client_for(get_user_model().objects.get(username="o2"))
    assert_error(client.get(url("projects", "other", "promotions", promotion.pk)), 404)
    assert_error(client.get(url("projects", "other", "promotions", "abc")), 404)


def test_pagination(api, dev, dev_web):
    for n in range(7):
        api["developer"].post(resource_url(dev, "web", "artifacts"), {"digest": digest(n)}, format="json")
    page = api["viewer"].get(resource_url(dev, "web", "artifacts") + "?page_size=3&page=2").json()
    assert page["count"] == 7 and [a["sequence"] for a in page["results"]] == [4, 3, 2]
    assert page["next"] and page["previous"]
    assert_error(api["viewer"].get(resource_url(dev, "web", "artifacts") + "?page=99"), 404)


@pytest.mark.parametrize("value", ["1285-11-04T13:12:02+17:01", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_odd_time_filters_never_error(api, project, value):
    from urllib.parse import quote

    response = api["viewer"].get(url("projects", "shop", "promotions") + "?queued_after=" + quote(value))
    assert response.status_code in (200, 400)


@pytest.mark.registry
class TestPublishByTag:
    """Without a digest, the tag is resolved through the registry, once."""

    @pytest.fixture
    def built(self, dev, make_resource, registry):
        from tests.fixtures.registry import make_image

        pushed = registry.push(make_image((1024,), seed=21), "web", tag="v1")
        return make_resource(dev, "api", image=registry.ref("web", tag="v1")), pushed

    def test_a_tag_publishes_its_digest(self, api, dev, built):
        resource, pushed = built
        response = api["developer"].post(resource_url(dev, "api", "artifacts"), {"tag": "v1"}, format="json")
        assert response.status_code == 201, response.json()
        assert (response.json()["digest"], response.json()["tag"]) == (pushed, "v1")
        assert Promotion.objects.get(resource=resource, reason="publish").to_digest == pushed

    def test_an_unknown_tag_is_400_on_tag(self, api, dev, built):
        body = assert_error(api["developer"].post(resource_url(dev, "api", "artifacts"), {"tag": "nope"}, format="json"), 400, "tag")
        assert "nope" in body["errors"]["tag"][0]
        assert not Artifact.objects.filter(resource=built[0]).exists()

    def test_an_unreachable_registry_queues_the_publish_and_publishes_nothing_yet(self, api, dev, make_resource):
        resource = make_resource(dev, "gone", image="127.0.0.1:9/shop/gone:v1")
        response = api["developer"].post(resource_url(dev, "gone", "artifacts"), {"tag": "v1"}, format="json")
        assert response.status_code == 202 and response.json()["status"] == "queued"
        assert not Artifact.objects.filter(resource=resource).exists()
