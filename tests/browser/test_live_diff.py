"""The edit page's "What will change" panel follows your typing, with nothing clicked and nothing
saved: replicas 2 → 3 appears as you type; a bad value is flagged at its field and clears when
fixed; a secret typed is never shown back; choosing Pin to digest brings in the digest field and
takes away track latest's settings. Without JavaScript, Review changes shows the same panel."""

import re

import pytest
from playwright.sync_api import expect

from environments.models import Resource
from projects.models import AuditEntry
from tests.browser.test_promotion_flows import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STAGING_EDIT = "/projects/shop/envs/staging/resources/web/edit/"


def retype(page, field, text):
    """Focus a field and type over it, as a person would (keyboard events, no click)."""
    field.focus()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type(text)


def test_the_panel_shows_the_differences_as_you_type(page, live_server, pipeline_world):
    staging_web = pipeline_world["staging_web"]  # track latest, 2 replicas
    sign_in(page, live_server, "maintainer")
    audits = AuditEntry.objects.count()
    page.goto(live_server.url + STAGING_EDIT)
    panel = page.locator("#changes")
    expect(panel).to_have_attribute("aria-live", "polite")
    expect(panel).to_contain_text("change a field and the differences appear here")
    page.shots("edit")

    replicas = page.get_by_label("Replicas")
    retype(page, replicas, "3")
    row = panel.get_by_role("row", name=re.compile("Replicas"))
    expect(row.get_by_role("cell")).to_have_text(["2", "3"])
    expect(replicas).to_be_focused()  # the panel's refresh leaves you where you type
    page.shots("replicas-2-to-3")

    # A bad value: flagged at its field, listed in the panel; fixed: both go.
    ports = page.get_by_label("Ports")
    retype(page, ports, "8080, metrics:x")
    expect(page.locator("#ports-errors")).to_contain_text("Couldn't read 'metrics:x'")
    expect(ports).to_have_attribute("aria-invalid", "true")
    expect(panel).to_contain_text("What will change shows once this is fixed")
    page.shots("ports-error")
    retype(page, ports, "8080, metrics:9090")
    expect(page.locator("#ports-errors")).to_have_text("")
    expect(ports).not_to_have_attribute("aria-invalid", "true")
    expect(panel.get_by_role("row", name=re.compile("Ports")).get_by_role("cell")).to_have_text(["8080", "8080, metrics:9090"])

    # A secret: the panel says it changes, never what it is.
    retype(page, page.get_by_label("Variable 1 name"), "API_KEY")
    retype(page, page.get_by_label("Variable 1 value"), "typed-s3cret")
    page.get_by_label("Variable 1 is secret").focus()
    page.keyboard.press("Space")
    expect(panel.get_by_role("row", name=re.compile("Env API_KEY"))).to_contain_text("(secret)")
    expect(panel).not_to_contain_text("typed-s3cret")

    # Pin to digest: its field comes in, track latest's settings go; the panel asks for the digest.
    expect(page.locator("#pin-fields")).to_be_hidden()
    expect(page.get_by_label("Soak time (seconds)")).to_be_visible()
    page.get_by_role("radio", name=re.compile("Pin to digest")).focus()
    page.keyboard.press("Space")
    expect(page.get_by_role("textbox", name=re.compile("Digest to pin"))).to_be_visible()
    expect(page.get_by_label("Soak time (seconds)")).to_be_hidden()
    expect(page.locator("#pinned_digest-errors")).to_contain_text("Paste the digest to pin")
    page.shots("pin-chosen")

    # Nothing was saved or audited along the way.
    staging_web.refresh_from_db()
    assert (staging_web.replicas, staging_web.binding, staging_web.env_vars.count()) == (2, "track_latest", 0)
    assert AuditEntry.objects.count() == audits


def test_without_javascript_review_changes_shows_them(page_without_js, live_server, pipeline_world):
    page = page_without_js
    sign_in(page, live_server, "maintainer")
    page.goto(live_server.url + STAGING_EDIT)
    page.get_by_label("Replicas").fill("3")
    page.get_by_role("button", name="Review changes").click()
    row = page.locator("#changes").get_by_role("row", name=re.compile("Replicas"))
    expect(row.get_by_role("cell")).to_have_text(["2", "3"])
    page.shots("reviewed")
    assert Resource.objects.get(pk=pipeline_world["staging_web"].pk).replicas == 2
