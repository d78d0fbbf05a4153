"""A new user, in a real browser: create a promoted resource with each binding, see it in
the pipeline, promote with one click, edit a pin, read the history; and the wizard
without JavaScript.

Reconcile doesn't run here (no django-q2 worker), so where the pipeline should
show a running digest the test writes the status fields as reconcile would.
"""

import re

import pytest
from playwright.sync_api import expect

from environments.models import Binding, Resource
from environments import services as promotion_services
from promotions.models import Promotion
from tests.fixtures.domain import digest
from tests.fixtures.web import set_status

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(members, environments, make_resource):
    dev_web = make_resource(environments["dev"], "web", ports=[8080])
    for n in (1, 2):
        promotion_services.artifact_publish(resource=dev_web, digest=digest(n), tag=f"1.{n}")
    set_status(dev_web, digest(2), applied_seq=2)
    return {"dev_web": dev_web, **environments}


def sign_in(page, live_server, username):
    page.goto(live_server.url + "/")
    expect(page).to_have_url(re.compile(r"/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-" + username)
    page.shots("login")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()


def open_wizard(page, env_name):
    page.get_by_role("link", name="Shop").click()
    expect(page.locator("#pipeline")).to_be_visible()
    page.shots("pipeline-before")
    page.locator("#pipeline thead").get_by_role("link", name=env_name, exact=True).click()
    page.get_by_role("link", name="+ Create Resource").click()
    expect(page.locator("#step-title")).to_have_text(re.compile("Step 1 of"))


def next_step(page, expected_title):
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#step-title")).to_contain_text(expected_title)


def promote_wizard(page, *, binding, name):
    """Source → source environment → source resource (the wizard container stays in place)."""
    # Mark the container: HTMX swaps each step inside it, so the mark survives (a page load would lose it).
    page.evaluate("document.getElementById('wizard').dataset.kept = 'yes'")
    page.get_by_label(re.compile("Promote from environment")).check()
    page.shots("1-source")
    next_step(page, "Source environment")
    expect(page.locator("#wizard[data-kept=yes]")).to_have_count(1)
    expect(page.locator("input[name=source_env]")).to_have_count(1)  # dev only: never the target, staging has nothing
    page.get_by_label("dev").check()
    page.shots("2-source-environment")
    next_step(page, "Source resource")
    expect(page.locator("#wizard")).to_contain_text(digest(2)[7:19])
    page.get_by_role("radio", name=re.compile(r"\bweb\b")).check()
    page.shots("3-source-resource")
    next_step(page, "Binding")
    expect(page.locator("#wizard[data-kept=yes]")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"step=binding"))  # HX-Push-Url: reload and history work


def fill_config(page, name):
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Ports").fill("8080")
    page.get_by_label("Replicas").fill("2")
    page.get_by_label("Variable 1 name").fill("API_KEY")
    page.get_by_label("Variable 1 value").fill("s3cret")
    page.get_by_label("Variable 1 is secret").check()


def test_create_a_pinned_resource_promote_edit_the_pin_and_read_history(page, live_server, world):
    page.on("dialog", lambda dialog: dialog.accept())  # the pipeline's confirmation
    sign_in(page, live_server, "maintainer")
    open_wizard(page, "prod")
    promote_wizard(page, binding="pin", name="web")

    # Binding: a bad digest is flagged as you type; picking a recent publish fills the field.
    page.get_by_role("radio", name=re.compile("Pin to digest")).check()
    digest_field = page.get_by_role("textbox", name=re.compile("Digest to pin"))
    digest_field.fill("sha256:not-a-digest")
    expect(page.locator("#pinned_digest-errors")).to_contain_text("64 lower-case hex")
    page.shots("4-binding-bad-digest")
    page.locator(f"input[name=digest_pick][value='{digest(1)}']").check()
    expect(digest_field).to_have_value(digest(1))
    expect(page.locator("#pinned_digest-errors")).to_contain_text("valid digest")
    page.shots("4-binding")
    next_step(page, "Configuration")

    # Config: a duplicate-free name, then Back keeps the pin.
    fill_config(page, "web")
    page.shots("5-config")
    page.get_by_role("button", name="Back").click()
    expect(page.locator("#step-title")).to_contain_text("Binding")
    expect(page.get_by_role("textbox", name=re.compile("Digest to pin"))).to_have_value(digest(1))
    next_step(page, "Configuration")
    expect(page.get_by_label("Name", exact=True)).to_have_value("web")
    expect(page.get_by_label("Variable 1 value")).to_have_value("")  # the secret stays masked
    next_step(page, "Review")
    expect(page.locator("#wizard")).to_contain_text(digest(1))
    page.shots("6-review")
    page.get_by_role("button", name="Create Resource").click()

    # HX-Location: the new resource's page.
    expect(page).to_have_url(re.compile(r"/projects/shop/envs/prod/resources/web/$"))
    expect(page.locator("main")).to_contain_text("Pinned to")
    page.shots("7-resource")
    prod_web = Resource.objects.get(environment=world["prod"], name="web")
    assert (prod_web.binding, prod_web.pinned_digest) == (Binding.PIN_DIGEST, digest(1))
    assert prod_web.env_vars.get(name="API_KEY").value == "s3cret"

    # The pipeline shows it with the right digest (status as reconcile would write it), 1 behind.
    set_status(prod_web, digest(1))
    page.get_by_role("link", name="Shop").click()
    cell = page.locator('[data-resource="prod/web"]')
    expect(cell).to_contain_text(digest(1)[7:19])
    expect(cell).to_contain_text("pin")
    expect(cell).to_contain_text("1 behind")
    page.shots("8-pipeline")

    # One click (with confirmation) promotes to the upstream's current digest.
    cell.get_by_role("link", name=re.compile("Promote")).click()
    expect(page.locator('[data-resource="prod/web"]')).to_contain_text(f"pin {digest(2)[7:15]}")
    page.shots("9-pipeline-promoted")
    prod_web.refresh_from_db()
    assert prod_web.pinned_digest == digest(2)
    set_status(prod_web, digest(2))  # reconcile applied it

    # Edit the pin back to the older build: the page says what will change before saving.
    page.goto(live_server.url + "/projects/shop/envs/prod/resources/web/edit/")
    page.get_by_role("textbox", name=re.compile("Digest to pin")).fill(digest(1))
    page.get_by_label("Replicas").fill("4")
    page.get_by_label("Replicas").blur()
    changes = page.locator("#changes")
    expect(changes).to_contain_text(digest(2))
    expect(changes).to_contain_text(digest(1))
    expect(changes).to_contain_text("Replicas")
    page.shots("10-edit-changes")
    page.get_by_role("button", name="Save changes").click()
    expect(page).to_have_url(re.compile(r"/resources/web/$"))
    expect(page.locator("#resource-live")).to_contain_text("Pin edited")
    page.shots("11-resource-history")
    prod_web.refresh_from_db()
    assert (prod_web.pinned_digest, prod_web.replicas) == (digest(1), 4)

    # The project's history: who, from → to, why.
    page.get_by_role("link", name="Shop").click()
    page.get_by_role("link", name="Promotion history").click()
    history = page.locator("#history")
    expect(history).to_contain_text("prod/web")
    expect(history).to_contain_text("Pin edited")
    expect(history).to_contain_text("maintainer")
    page.shots("12-project-history")
    assert Promotion.objects.filter(resource=prod_web, reason="pin_edit").count() == 1
    assert Promotion.objects.filter(resource=prod_web, reason="promote").count() == 1  # the one-click promote


def test_create_a_track_latest_resource(page, live_server, world):
    sign_in(page, live_server, "developer")
    open_wizard(page, "staging")
    promote_wizard(page, binding="track", name="web")
    page.get_by_role("radio", name=re.compile("Track latest")).check()
    page.shots("4-binding")
    next_step(page, "Configuration")
    fill_config(page, "web")
    page.get_by_label("Name", exact=True).fill("Bad Name")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#name-errors")).to_contain_text("Name must be")
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    page.shots("5-config-error")
    page.get_by_label("Name", exact=True).fill("web")
    next_step(page, "Review")
    expect(page.locator("#wizard")).to_contain_text("Track latest")
    page.shots("6-review")
    page.get_by_role("button", name="Create Resource").click()
    expect(page).to_have_url(re.compile(r"/projects/shop/envs/staging/resources/web/$"))
    staging_web = Resource.objects.get(environment=world["staging"], name="web")
    assert staging_web.binding == Binding.TRACK_LATEST

    set_status(staging_web, digest(2), applied_seq=2)
    page.get_by_role("link", name="Shop").click()
    cell = page.locator('[data-resource="staging/web"]')
    expect(cell).to_contain_text(digest(2)[7:19])
    expect(cell).to_contain_text("track")
    expect(cell).to_contain_text("up to date")
    # A developer can't promote into protected prod: no "+" there.
    expect(page.locator("#pipeline thead a.add")).to_have_count(2)
    page.shots("7-pipeline")


def test_the_wizard_works_without_javascript(page_without_js, live_server, world):
    page = page_without_js
    sign_in(page, live_server, "developer")
    page.goto(live_server.url + "/projects/shop/envs/dev/new-resource/")
    page.get_by_role("radio", name=re.compile(r"^\s*Image")).check()
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#step-title")).to_contain_text("Step 2 of 4: Image")
    page.get_by_label("Image reference").fill("registry.example.com/shop/api:1.0")
    page.shots("2-image")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Name", exact=True).fill("api")
    page.get_by_label("Ports").fill("9000")
    page.get_by_role("button", name="Back").click()
    expect(page.get_by_label("Image reference")).to_have_value("registry.example.com/shop/api:1.0")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_label("Name", exact=True)).to_have_value("api")
    page.shots("3-config")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#step-title")).to_contain_text("Review")
    page.shots("4-review")
    page.get_by_role("button", name="Create Resource").click()
    expect(page).to_have_url(re.compile(r"/projects/shop/envs/dev/resources/api/$"))
    page.shots("5-resource")
    assert Resource.objects.get(environment=world["dev"], name="api").image == "registry.example.com/shop/api:1.0"
