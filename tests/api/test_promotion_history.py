"""Issue 16 part 2 through the API: the history's cause and duration fields, and the page's filters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from environments import services
from environments.models import Environment
from promotions.models import Promotion
from tests.fixtures.api import assert_error, resource_url, url
from tests.fixtures.domain import digest

pytestmark = pytest.mark.django_db

LIST = url("projects", "shop", "promotions")


@pytest.fixture
def history(dev_web, staging, prod, make_resource, maintainer, developer):
    """dev/web publishes 1 and 2 (by the developer, then a registry webhook); staging follows; prod is pinned
    to 1 and then promoted with one click, applied 0.5 s after it was asked (2 min after the publish)."""
    services.artifact_publish(resource=dev_web, digest=digest(1), actor=developer)
    services.artifact_publish(resource=dev_web, digest=digest(2), actor_label="registry webhook (r.example.com)")
    make_resource(staging, upstream=dev_web)
    prod_web = make_resource(prod, upstream=dev_web, binding="pin_digest", pinned=digest(1))
    services.resource_promote_upstream_current(resource=prod_web, actor=maintainer)
    promoted = Promotion.objects.get(resource=prod_web, reason="promote")
    Promotion.objects.filter(pk=promoted.pk).update(
        applied_at=promoted.queued_at + timedelta(seconds=0.5), latency_s=120.0,
        healthy_at=promoted.queued_at + timedelta(seconds=4), healthy_latency_s=123.5, status="healthy")
    return {"prod_web": prod_web, "promoted": promoted}


def test_each_promotion_says_its_cause_and_the_duration_that_fits_it(api, history, dev):
    body = api["viewer"].get(LIST + "?environment=prod&cause=promote").json()
    assert body["count"] == 1
    promoted = body["results"][0]
    assert (promoted["reason"], promoted["cause"], promoted["actor"]) == ("promote", "promote", "maintainer")
    assert (promoted["duration_from"], promoted["applied_seconds"], promoted["healthy_seconds"]) == ("requested", 0.5, 4.0)
    assert (promoted["latency_s"], promoted["healthy_latency_s"]) == (120.0, 123.5)  # still there: from the publish
    one = api["viewer"].get(LIST + f"{promoted['id']}/").json()
    assert one == promoted
    published = api["viewer"].get(resource_url(dev, "web", "promotions")).json()["results"]
    assert {(p["cause"], p["duration_from"]) for p in published} == {("publish", "publish")}


def test_an_approved_change_is_an_approval(api, dev_web, prod, make_resource, maintainers):
    services.artifact_publish(resource=dev_web, digest=digest(1))
    prod_web = make_resource(prod, upstream=dev_web, binding="pin_digest", pinned=digest("old"))
    Environment.objects.filter(pk=prod.pk).update(required_approvals=1)
    change = services.resource_promote_upstream_current(resource=prod_web, actor=maintainers[0]).change_request
    assert api["viewer"].get(LIST + "?cause=approval").json()["count"] == 0
    services.change_request_approve(request=change, actor=maintainers[1])
    approved = api["viewer"].get(LIST + "?cause=approval").json()["results"]
    assert [(p["reason"], p["cause"], p["duration_from"]) for p in approved] == [("promote", "approval", "approved")]


@pytest.mark.parametrize("query, expected", [
    ("cause=promote", {("prod", "promote")}),
    ("cause=create&environment=staging", {("staging", "create")}),
    ("cause=create&cause=publish", {("staging", "create"), ("prod", "create"), ("dev", "publish")}),
    ("who=developer", {("dev", "publish")}),
    ("who=registry%20webhook", {("dev", "publish")}),
    ("who=MAINTAINER", {("prod", "promote")}),
    ("resource=web&status=healthy", {("prod", "promote")}),
    ("date_from=2000-01-01&date_to=2999-01-01&environment=prod", {("prod", "create"), ("prod", "promote")}),
    ("date_to=2000-01-01", set()),
    ("status=&cause=&environment=&date_from=", {("dev", "publish"), ("staging", "create"), ("prod", "create"), ("prod", "promote")}),
])
def test_the_api_takes_the_pages_filters(api, history, query, expected):
    body = api["viewer"].get(LIST + "?" + query).json()
    assert {(p["environment"], p["cause"]) for p in body["results"]} == expected


@pytest.mark.parametrize("query, field", [
    ("environment=nowhere", "environment"),
    ("resource=ghost", "resource"),
    ("cause=whim", "cause"),
    ("date_from=2026-02-31", "date_from"),
    ("date_from=2026-05-02&date_to=2026-05-01", "date_to"),
    ("who=" + "x" * 201, "who"),
])
def test_a_bad_filter_is_a_400_on_its_parameter(api, history, query, field):
    assert_error(api["viewer"].get(LIST + "?" + query), 400, field)


def test_the_schema_documents_the_filters_and_the_fields(api):
    schema = api["anonymous"].get("/api/schema/", HTTP_ACCEPT="application/json").json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/projects/{project}/promotions/"]["get"]["parameters"]}
    assert {"environment", "resource", "cause", "status", "who", "date_from", "date_to", "reason", "queued_after",
            "queued_before"} <= set(parameters)
    assert "approval" in parameters["cause"]["schema"]["items"]["enum"]
    assert parameters["date_from"]["schema"] == {"type": "string", "format": "date"}
    fields = schema["components"]["schemas"]["Promotion"]["properties"]
    assert {"cause", "duration_from", "applied_seconds", "healthy_seconds"} <= set(fields)


def test_the_filtered_list_reads_a_fixed_number_of_queries(api, history, dev_web):
    target = LIST + "?page_size=500&cause=publish&cause=approval&status=queued&status=superseded&environment=dev&date_from=2000-01-01"
    api["viewer"].get(target)  # the token's last use is written once a minute, not per request
    with CaptureQueriesContext(connection) as few:
        assert api["viewer"].get(target).status_code == 200
    now = timezone.now()
    Promotion.objects.bulk_create(Promotion(resource=dev_web, to_digest=digest(n), reason="publish", latency_s=n,
                                            applied_at=now) for n in range(150))
    with CaptureQueriesContext(connection) as many:
        response = api["viewer"].get(target)
    assert response.json()["count"] >= 150
    assert len(many.captured_queries) == len(few.captured_queries) <= 10
