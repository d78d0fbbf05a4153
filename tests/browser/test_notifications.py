"""Notifications in the browser: a maintainer adds a webhook, sends it a test, and watches the delivery
log turn from queued to delivered (HTMX, under the Content-Security-Policy); then pauses and deletes it."""

import re

import pytest
from playwright.sync_api import expect

from promotions import notifications
from promotions.models import ProjectWebhook, WebhookDelivery
from tests.browser.test_promotion_flows import sign_in
from tests.promotions.test_notifications import SECRET, Receiver, verify

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_a_maintainer_adds_a_webhook_and_sends_it_a_test(page, live_server, members, environments, receiver):
    refused = []
    page.on("console", lambda message: refused.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text else None)
    page.on("dialog", lambda dialog: dialog.accept())

    sign_in(page, live_server, "maintainer")
    page.goto(live_server.url + "/projects/shop/")
    page.get_by_role("link", name="Notifications").click()
    expect(page.get_by_role("heading", name="Add a webhook")).to_be_visible()
    expect(page.get_by_text("No webhooks yet.")).to_be_visible()

    # A bad URL: the error is next to the field, and nothing is added.
    page.get_by_label("Name").fill("ci")
    page.get_by_label("URL").fill("ftp://ci.example.com/")
    page.get_by_label("Format").select_option("hoist")
    page.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#url-errors")).to_contain_text("https://")
    expect(page.locator("#secret-errors")).to_contain_text("signs every body")
    page.shots("add-refused")

    expect(page.get_by_label("URL")).to_have_value("ftp://ci.example.com/")  # what was typed stays
    page.get_by_label("URL").fill(receiver.url)
    page.get_by_label("Secret").fill(SECRET)
    page.get_by_label("promotion.failed").check()
    page.get_by_role("button", name="Add webhook").click()
    expect(page.locator(".messages")).to_contain_text("Webhook ci added")
    card = page.locator("article.webhook").filter(has_text="ci")
    expect(card).to_contain_text(f"http://127.0.0.1:{receiver.port}/…")
    expect(card).to_contain_text("promotion.failed")
    page.shots("added")

    card.get_by_role("button", name="Send test").click()
    expect(card.locator("tbody tr").first).to_contain_text("Queued")
    page.shots("test-queued")
    delivery = WebhookDelivery.objects.get()
    assert notifications.deliver(delivery.pk, 1) == "delivered"  # what a worker does
    expect(card.locator("tbody tr").first).to_contain_text("Delivered", timeout=10_000)  # the log's own refresh
    expect(card.locator("tbody tr").first).to_contain_text("200")
    page.shots("test-delivered")
    (request,) = receiver.requests
    assert verify(request["headers"]["X-Hoist-Signature"], request["body"])

    card.get_by_role("button", name="Pause").click()
    expect(card).to_contain_text("paused")
    card.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No webhooks yet.")).to_be_visible()
    assert not ProjectWebhook.objects.exists()
    page.shots("deleted")
    assert refused == []


def test_a_viewer_sees_the_log_without_the_buttons(page, live_server, members, environments, project):
    hook = notifications.webhook_create(project=project, name="#deploys", format="slack",
                                        url="https://hooks.slack.com/services/T000/B000/XXXX")
    notifications.webhook_test(webhook=hook)
    sign_in(page, live_server, "viewer")
    page.goto(live_server.url + "/projects/shop/notifications/")
    expect(page.locator("article.webhook")).to_contain_text("https://hooks.slack.com/…")
    expect(page.locator("article.webhook tbody tr")).to_contain_text(re.compile("Queued"))
    expect(page.get_by_role("button", name="Send test")).to_have_count(0)
    expect(page.get_by_role("heading", name="Add a webhook")).to_have_count(0)
