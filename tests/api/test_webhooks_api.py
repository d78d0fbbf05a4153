"""/api/v1/projects/{project}/webhooks/: members read, maintainers write, errors name the field, writes are audited."""

from __future__ import annotations

import json

import pytest

from projects.models import AuditEntry
from promotions import notifications
from promotions.models import ProjectWebhook, WebhookDelivery
from tests.fixtures.api import assert_error, url

pytestmark = pytest.mark.django_db

SECRET = "s3cret-s3cret-s3cret-0123456789"
HOOKS = url("projects", "shop", "webhooks")
BODY = {"name": "ci", "url": "https://hooks.example.com/hoist/abc123?token=xyz", "secret": SECRET,
        "events": ["promotion.failed", "promotion.healthy"]}


@pytest.fixture
def hook(project):
    return notifications.webhook_create(project=project, name="#deploys", format="slack",
                                        url="https://hooks.slack.com/services/T000/B000/XXXX")


def hook_url(hook, *rest) -> str:
    return url("projects", "shop", "webhooks", hook.pk, *rest)


def test_a_maintainer_adds_a_webhook_and_only_scheme_and_host_come_back(api):
    response = api["maintainer"].post(HOOKS, BODY, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body == {"id": body["id"], "name": "ci", "url": "https://hooks.example.com/…", "format": "hoist",
                    "events": ["promotion.healthy", "promotion.failed"], "active": True, "secret": "set",
                    "created_at": body["created_at"]}
    stored = ProjectWebhook.objects.get()
    assert (stored.url, stored.secret) == (BODY["url"], SECRET)
    entry = AuditEntry.objects.get(action="webhook.create")
    assert (entry.via, entry.outcome, entry.actor.username) == ("api", "ok", "maintainer")
    assert "xyz" not in json.dumps(entry.changes) and SECRET not in json.dumps(entry.changes)


@pytest.mark.parametrize("role", ["viewer", "developer"])
def test_members_read_webhooks_but_only_maintainers_change_them(api, hook, role):
    listed = api[role].get(HOOKS)
    assert listed.status_code == 200
    (row,) = listed.json()["results"]
    assert (row["url"], row["secret"]) == ("https://hooks.slack.com/…", "not set")
    assert api[role].get(hook_url(hook, "deliveries")).status_code == 200
    expected = "You need the maintainer role in project shop to manage notifications."
    for response in (api[role].post(HOOKS, BODY, format="json"),
                     api[role].patch(hook_url(hook), {"active": False}, format="json"),
                     api[role].post(hook_url(hook, "test")),
                     api[role].delete(hook_url(hook))):
        assert assert_error(response, 403)["detail"] == expected
    assert ProjectWebhook.objects.get().active and not WebhookDelivery.objects.exists()
    refused = AuditEntry.objects.filter(outcome="refused", via="api").values_list("action", flat=True)
    assert sorted(refused) == ["webhook.create", "webhook.delete", "webhook.test", "webhook.update"]


def test_outsiders_get_404_and_strangers_401(api, hook):
    for path in (HOOKS, hook_url(hook), hook_url(hook, "deliveries")):
        assert_error(api["outsider"].get(path), 404)
        assert_error(api["anonymous"].get(path), 401)
    assert_error(api["outsider"].post(hook_url(hook, "test")), 404)


def test_a_webhook_of_another_project_or_a_bad_id_is_404(api, hook, other_project, maintainer):
    from projects.models import Membership

    Membership.objects.create(project=other_project, user=maintainer, role="maintainer")
    assert_error(api["maintainer"].get(url("projects", "other", "webhooks", hook.pk)), 404)
    assert_error(api["maintainer"].get(url("projects", "shop", "webhooks", "abc")), 404)
    assert_error(api["maintainer"].get(url("projects", "shop", "webhooks", 10**20)), 404)


@pytest.mark.parametrize("body, field", [
    ({**BODY, "url": "ftp://hooks.example.com/"}, "url"),
    ({**BODY, "url": 5}, "url"),
    ({**BODY, "events": ["promotion.exploded"]}, "events.0"),
    ({**BODY, "events": "promotion.failed"}, "events"),
    ({**BODY, "format": "xml"}, "format"),
    ({**BODY, "format": 1}, "format"),
    ({**BODY, "secret": "short"}, "secret"),
    ({**BODY, "active": "yes"}, "active"),
    ({key: value for key, value in BODY.items() if key != "name"}, "name"),
    ({**BODY, "colour": "red"}, "colour"),
    ({**BODY, "secret": ""}, "secret"),  # the hoist format signs: it needs one
])
def test_bad_input_is_a_400_naming_the_field(api, body, field):
    assert_error(api["maintainer"].post(HOOKS, body, format="json"), 400, field)
    assert not ProjectWebhook.objects.exists()


@pytest.mark.parametrize("target", ["http://127.0.0.1:9000/hook", "http://169.254.169.254/latest/meta-data/",
                                    "http://localhost/", "http://[fd00:ec2::254]/"])
def test_the_strict_outbound_policy_refuses_a_loopback_or_metadata_url(api, settings, target):
    settings.HOIST_ALLOWED_REGISTRIES, settings.HOIST_ALLOW_PRIVATE_REGISTRIES = [], False
    body = assert_error(api["maintainer"].post(HOOKS, {**BODY, "url": target}, format="json"), 400, "url")
    assert "outbound policy" in body["errors"]["url"][0]
    assert AuditEntry.objects.get(action="webhook.create").outcome == "refused"


def test_a_taken_name_is_a_400_on_name(api, hook):
    body = assert_error(api["maintainer"].post(HOOKS, {**BODY, "name": "#deploys"}, format="json"), 400, "name")
    assert "already has a webhook named '#deploys'" in body["errors"]["name"][0]


def test_patch_changes_only_what_is_sent_and_a_get_body_sent_back_changes_nothing(api, hook):
    client = api["maintainer"]
    current = client.get(hook_url(hook)).json()
    response = client.patch(hook_url(hook), current, format="json")
    assert response.status_code == 200 and response.json() == current
    stored = ProjectWebhook.objects.get()
    assert stored.url == "https://hooks.slack.com/services/T000/B000/XXXX" and stored.secret == ""
    response = client.patch(hook_url(hook), {"events": ["freeze.started"], "active": False, "secret": SECRET}, format="json")
    assert response.status_code == 200
    assert (response.json()["events"], response.json()["active"], response.json()["secret"]) == (["freeze.started"], False, "set")
    response = client.patch(hook_url(hook), {"url": "https://hooks.slack.com/services/T000/B000/YYYY", "secret": None},
                            format="json")
    assert response.status_code == 200 and response.json()["secret"] == "not set"
    assert ProjectWebhook.objects.get().url.endswith("/YYYY")
    assert_error(client.patch(hook_url(hook), {"format": "hoist"}, format="json"), 400, "secret")
    assert AuditEntry.objects.filter(action="webhook.update", via="api", outcome="ok").count() == 3


def test_send_test_answers_202_with_the_queued_delivery(api, hook, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        response = api["maintainer"].post(hook_url(hook, "test"))
    assert response.status_code == 202
    delivery = response.json()
    assert (delivery["event"], delivery["status"], delivery["attempts"], delivery["response_code"]) == ("test", "queued", 0, None)
    assert json.loads(delivery["body"])["text"].startswith(":wave: Test notification from Hoist for project shop")
    assert len(queued) == 1  # the task, enqueued once the request's write commits
    assert AuditEntry.objects.get(action="webhook.test").via == "api"


def test_the_delivery_log_is_newest_first_and_paginated(api, hook, project):
    from environments import signals

    for n in range(3):
        signals.event_happened.send(sender=None, project=project, event="promotion.healthy",
                                    data={"environment": "dev", "resource": "web", "digest": "", "promotion_id": n})
    response = api["viewer"].get(hook_url(hook, "deliveries"), {"page_size": 2})
    assert response.status_code == 200
    page = response.json()
    assert page["count"] == 3 and page["next"] and len(page["results"]) == 2
    assert [json.loads(d["body"])["text"] for d in page["results"]] == [":white_check_mark: shop/dev web is healthy on the change"] * 2
    assert page["results"][0]["id"] > page["results"][1]["id"]
    assert set(page["results"][0]) == {"id", "event", "status", "attempts", "response_code", "last_error",
                                       "next_attempt_at", "created_at", "delivered_at", "body"}


def test_delete_removes_the_webhook_and_its_log(api, hook):
    notifications.webhook_test(webhook=hook)
    assert api["maintainer"].delete(hook_url(hook)).status_code == 204
    assert not ProjectWebhook.objects.exists() and not WebhookDelivery.objects.exists()
    assert AuditEntry.objects.get(action="webhook.delete").via == "api"
    assert_error(api["maintainer"].get(hook_url(hook)), 404)


def test_the_schema_documents_the_endpoints(api):
    schema = api["anonymous"].get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/projects/{project}/webhooks/"])
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/projects/{project}/webhooks/{id}/"])
    assert "202" in paths["/api/v1/projects/{project}/webhooks/{id}/test/"]["post"]["responses"]
    assert "get" in paths["/api/v1/projects/{project}/webhooks/{id}/deliveries/"]
