"""`status.display`: the API says what the pages say (environments.display decides both)."""

from datetime import timedelta

from django.utils import timezone

from environments import services
from environments.models import Binding, Environment, Phase, Resource
from tests.fixtures.api import resource_url
from tests.fixtures.domain import digest


def test_a_resource_retrying_reads_retrying_with_the_full_error(api, dev_web, prod, make_resource):
    error = "Will retry after attempt 4: registry.example.com: " + "connection refused; " * 10
    Resource.objects.filter(pk=dev_web.pk).update(phase=Phase.PROGRESSING, message="rolling out 0/1", failures_in_a_row=2,
                                                  backoff_until=timezone.now() + timedelta(seconds=30))
    status = api["viewer"].get(resource_url(dev_web.environment, "web")).json()["status"]
    assert status["display"]["state"] == "retrying" and status["display"]["tone"] == "warn"
    assert status["display"]["label"].startswith("Retrying in ")
    assert status["rollout"]["state"] == "pending"  # the older field agrees: not "rolling_out"
    Resource.objects.filter(pk=dev_web.pk).update(phase=Phase.FAILED, message=error)
    shown = api["viewer"].get(resource_url(dev_web.environment, "web")).json()["status"]["display"]
    assert shown["state"] == "retrying" and shown["detail"] == error.strip()  # never shortened


def test_the_list_shows_a_change_awaiting_approval_as_the_pages_do(api, dev_web, prod, make_resource, maintainers):
    web = make_resource(prod, upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    Resource.objects.filter(pk=web.pk).update(phase=Phase.READY, current_digest=digest(1), healthy_digest=digest(1))
    Environment.objects.filter(pk=prod.pk).update(required_approvals=1)
    web.refresh_from_db()
    services.resource_pin(resource=web, digest=digest(2), actor=maintainers[0])
    listed = api["viewer"].get(resource_url(prod)).json()["results"]
    assert listed[0]["status"]["display"] == {
        "state": "awaiting_approval", "label": "awaiting approval", "tone": "warn",
        "detail": "A change of what runs waits for maintainers' approvals.",
    }
    assert listed[0]["status"]["phase"] == "ready"  # what runs is unchanged


def test_a_healthy_resource(api, dev_web):
    Resource.objects.filter(pk=dev_web.pk).update(phase=Phase.READY, current_digest=digest(1), healthy_digest=digest(1))
    shown = api["viewer"].get(resource_url(dev_web.environment, "web")).json()["status"]["display"]
    assert shown == {"state": "healthy", "label": "Healthy", "tone": "ok", "detail": ""}


def test_the_schema_documents_status_display(client):
    document = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    schemas = document["components"]["schemas"]
    assert "display" in schemas["Status"]["properties"]
    display = schemas["Display"]["properties"]
    assert set(display) == {"state", "label", "tone", "detail"}
    enum = display["state"]["allOf"][0]["$ref"].rsplit("/", 1)[1]
    assert set(schemas[enum]["enum"]) == {"retrying", "failed", "rolling_out", "healthy", "awaiting_approval", "frozen",
                                          "waiting", "pending"}
