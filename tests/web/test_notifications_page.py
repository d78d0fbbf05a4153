"""The project's Notifications page: its webhooks and their delivery logs; add, pause, delete, send a test."""

from __future__ import annotations

from html import unescape

import pytest

from projects.models import AuditEntry
from promotions import notifications
from promotions.models import ProjectWebhook, WebhookDelivery
from tests.fixtures.web import htmx

pytestmark = pytest.mark.django_db

PAGE = "/projects/shop/notifications/"
SECRET = "s3cret-s3cret-s3cret-0123456789"


@pytest.fixture
def hook(project):
    return notifications.webhook_create(project=project, name="#deploys", format="slack",
                                        url="https://hooks.slack.com/services/T000/B000/XXXX")


def text(response) -> str:
    return unescape(response.content.decode())


def test_the_project_page_links_to_notifications(maintainer_client, project):
    assert f'href="{PAGE}"' in maintainer_client.get("/projects/shop/").content.decode()


def test_a_viewer_sees_webhooks_and_their_log_but_no_buttons(viewer_client, hook, django_capture_on_commit_callbacks):
    delivery = notifications.webhook_test(webhook=hook)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=1, response_code=404,
                                                          last_error="HTTP 404: no_service")
    html = text(viewer_client.get(PAGE))
    assert "#deploys" in html and "https://hooks.slack.com/…" in html and "XXXX" not in html
    assert "HTTP 404: no_service" in html and ">404<" in html and "Failed" in html
    assert "Send test" not in html and "Add a webhook" not in html and "Maintainers add them" not in html


def test_a_maintainer_adds_a_webhook(maintainer_client, project):
    response = maintainer_client.post(PAGE, {"name": "ci", "url": "https://ci.example.com/hooks/hoist", "format": "hoist",
                                             "secret": SECRET, "events": ["promotion.failed"], "active": "on"})
    assert response.status_code == 302 and response["Location"] == PAGE
    hook = ProjectWebhook.objects.get()
    assert (hook.name, hook.format, hook.events, hook.active, hook.secret) == ("ci", "hoist", ["promotion.failed"], True, SECRET)
    assert AuditEntry.objects.get(action="webhook.create").via == "web"
    html = text(maintainer_client.get(PAGE))
    assert "Webhook ci added" in html and "https://ci.example.com/…" in html and SECRET not in html


def test_errors_show_next_to_their_fields_and_the_secret_is_not_shown_back(maintainer_client, project, settings):
    settings.HOIST_ALLOWED_REGISTRIES, settings.HOIST_ALLOW_PRIVATE_REGISTRIES = [], False
    response = maintainer_client.post(PAGE, {"name": "", "url": "http://169.254.169.254/latest", "format": "hoist",
                                             "secret": "short-secret"})
    assert response.status_code == 200
    html = response.content.decode()
    url_errors = html[html.index('id="url-errors"'):]
    assert "outbound policy" in url_errors[:400]
    assert "Give the webhook a name" in html[html.index('id="name-errors"'):][:300]
    assert "A secret is 16 to 256 characters" in unescape(html[html.index('id="secret-errors"'):][:400])
    assert "short-secret" not in html and 'value="http://169.254.169.254/latest"' in html
    assert not ProjectWebhook.objects.exists()
    assert AuditEntry.objects.get(action="webhook.create").outcome == "refused"


def test_send_test_with_htmx_answers_the_list_with_the_queued_delivery(maintainer_client, hook):
    response = maintainer_client.post(f"/projects/shop/notifications/{hook.pk}/test/", **htmx("hooks"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and 'id="hooks"' in html
    assert "Queued" in html and 'hx-trigger="every 3s"' in html  # refreshes while something is pending
    assert WebhookDelivery.objects.get().event == "test"
    assert AuditEntry.objects.get(action="webhook.test").via == "web"


def test_send_test_without_javascript_redirects_back(maintainer_client, hook):
    response = maintainer_client.post(f"/projects/shop/notifications/{hook.pk}/test/")
    assert response.status_code == 302 and response["Location"] == PAGE


def test_pause_resume_and_delete(maintainer_client, hook):
    maintainer_client.post(f"/projects/shop/notifications/{hook.pk}/toggle/", **htmx("hooks"))
    hook.refresh_from_db()
    assert not hook.active
    html = maintainer_client.get(PAGE).content.decode()
    assert "paused" in html and ">Resume<" in html
    maintainer_client.post(f"/projects/shop/notifications/{hook.pk}/toggle/")
    hook.refresh_from_db()
    assert hook.active
    response = maintainer_client.post(f"/projects/shop/notifications/{hook.pk}/delete/", **htmx("hooks"))
    assert response.status_code == 200 and "No webhooks yet" in response.content.decode()
    assert not ProjectWebhook.objects.exists()


@pytest.mark.parametrize("path", ["", "{pk}/test/", "{pk}/toggle/", "{pk}/delete/"])
def test_a_developer_cant_change_notifications(developer_client, hook, path):
    response = developer_client.post(PAGE + path.format(pk=hook.pk), {"name": "x", "url": "https://x.example.com/",
                                                                       "format": "slack"})
    assert response.status_code == 403
    assert ProjectWebhook.objects.get().active and ProjectWebhook.objects.count() == 1
    assert not WebhookDelivery.objects.exists()
    assert AuditEntry.objects.get(outcome="refused").via == "web"


def test_outsiders_get_404(outsider_client, hook):
    assert outsider_client.get(PAGE).status_code == 404
    assert outsider_client.post(f"/projects/shop/notifications/{hook.pk}/test/").status_code == 404
