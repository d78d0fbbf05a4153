"""The pipeline's one-click promote, and the project's promotion history."""

from datetime import timedelta

import pytest

from environments.models import Binding
from promotions.models import Promotion
from tests.fixtures.domain import digest
from tests.fixtures.web import htmx

PROMOTE = "/projects/shop/envs/prod/resources/web/promote/"
HISTORY = "/projects/shop/promotions/"


def test_promote_asks_for_confirmation_first(maintainer_client, pipeline_world):
    body = maintainer_client.get(PROMOTE + "?next=/projects/shop/").content.decode()
    assert digest(1) in body and digest(3) in body and 'value="/projects/shop/"' in body
    assert Promotion.objects.filter(reason="pin_edit").count() == 0


def test_a_plain_promote_pins_the_upstreams_current_digest_and_redirects(maintainer_client, pipeline_world):
    response = maintainer_client.post(PROMOTE, {"next": "/projects/shop/"})
    assert response.status_code == 302 and response["Location"] == "/projects/shop/"
    prod_web = pipeline_world["prod_web"]
    prod_web.refresh_from_db()
    assert (prod_web.binding, prod_web.pinned_digest) == (Binding.PIN_DIGEST, digest(3))
    assert Promotion.objects.get(resource=prod_web, reason="promote").to_digest == digest(3)


def test_an_unsafe_next_is_ignored(maintainer_client, pipeline_world):
    response = maintainer_client.post(PROMOTE, {"next": "https://evil.example.com/"})
    assert response["Location"] == "/projects/shop/envs/prod/resources/web/"


def test_the_pipelines_promote_answers_with_the_refreshed_pipeline(maintainer_client, pipeline_world):
    response = maintainer_client.post(PROMOTE, **htmx("pipeline"))
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body and 'id="pipeline"' in body
    assert f"pin {digest(3)[7:15]}" in body and "pinned to" in body


def test_promote_from_elsewhere_over_htmx_answers_with_hx_location(maintainer_client, pipeline_world):
    response = maintainer_client.post(PROMOTE, **htmx())
    assert response["HX-Location"] == "/projects/shop/envs/prod/resources/web/"


def test_promote_when_the_upstream_never_published_says_so(maintainer_client, dev, prod, make_resource):
    upstream = make_resource(dev, "api")
    make_resource(prod, "api", upstream=upstream, binding=Binding.PIN_DIGEST)
    response = maintainer_client.post("/projects/shop/envs/prod/resources/api/promote/", **htmx("pipeline"))
    assert "has not published an image yet" in response.content.decode()


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_only_maintainers_promote(client_as, pipeline_world, role):
    client = client_as(role)
    assert client.get(PROMOTE).status_code == 403
    assert client.post(PROMOTE).status_code == 403


def test_an_image_source_has_nothing_to_promote(maintainer_client, pipeline_world):
    assert maintainer_client.post("/projects/shop/envs/dev/resources/web/promote/").status_code == 403


def test_the_history_shows_who_when_what_why_status_latency_and_errors(viewer_client, pipeline_world):
    prod_web = pipeline_world["prod_web"]
    created = Promotion.objects.get(resource=prod_web)
    # Applied 1.5 s after it was asked for; its image was published long before (not what counts here).
    Promotion.objects.filter(pk=created.pk).update(status="failed", error="registry unreachable", latency_s=120.0,
                                                   applied_at=created.queued_at + timedelta(seconds=1.5))
    response = viewer_client.get(HISTORY)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body
    assert "prod/web" in body and "staging/web" in body and "dev/web" in body
    assert "registry unreachable" in body and "requested → applied <strong>1.5 s" in body and "Failed" in body
    assert "Publish" in body and "Resource created" in body and "2 min" not in body
    assert digest(1)[7:19] in body and "just now" in body


def test_the_history_refreshes_alone(viewer_client, pipeline_world):
    body = viewer_client.get(HISTORY, **htmx("history")).content.decode()
    assert "<html" not in body and 'id="history"' in body and 'hx-trigger="every 5s"' in body


def test_the_history_is_paged(maintainer_client, pipeline_world, django_assert_max_num_queries):
    prod_web = pipeline_world["prod_web"]
    Promotion.objects.bulk_create([Promotion(resource=prod_web, to_digest=digest(i), reason="pin_edit") for i in range(120)])
    with django_assert_max_num_queries(9):  # the filter form's choices: environments, resource names, members
        body = maintainer_client.get(HISTORY).content.decode()
    assert "Page 1 of 3" in body and "Older" in body
    body = maintainer_client.get(HISTORY + "?page=3").content.decode()
    assert "Page 3 of 3" in body and 'hx-trigger="every 5s"' not in body
