"""The Create Resource wizard with the keyboard alone: Tab, Shift+Tab, Space, Enter, arrow keys
and typing, never a click. After each HTMX step swap focus is on the new step's heading
("Step 3 of 6: Binding"); every element the keyboard reaches shows a focus ring; the pin's
digest field is there only while Pin to digest is chosen.

Both promote paths: track latest (a developer into staging, through a config error and Back)
and pin to digest (a maintainer into prod, picking a recent publish). Without JavaScript the
digest field shows all the time, saying when it applies.
"""

import re

import pytest
from playwright.sync_api import expect

from environments import services as env_services
from environments.models import Binding, Resource
from tests.fixtures.domain import digest
from tests.fixtures.web import set_status

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(members, environments, make_resource):
    dev_web = make_resource(environments["dev"], "web", ports=[8080])
    for n in (1, 2):
        env_services.artifact_publish(resource=dev_web, digest=digest(n), tag=f"1.{n}")
    set_status(dev_web, digest(2), applied_seq=2)
    return {"dev_web": dev_web, **environments}


# What the keyboard is on, for messages; and whether it shows a focus ring there.
FOCUSED = """() => { const el = document.activeElement;
  return `${el.tagName.toLowerCase()}#${el.id}[name=${el.getAttribute('name')}] ${(el.innerText || el.value || '').trim().slice(0, 40)}`; }"""
RING = """() => { const style = getComputedStyle(document.activeElement);
  return (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0) || style.boxShadow !== 'none'; }"""


def focused(page) -> str:
    return page.evaluate(FOCUSED)


def assert_ring(page) -> None:
    assert page.evaluate(RING), f"no visible focus ring on {focused(page)}"


def tab_to(page, selector: str, *, back: bool = False, limit: int = 60) -> None:
    """Press Tab (Shift+Tab with `back`) until `selector` has focus; each stop shows a focus ring."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        if page.evaluate("() => document.activeElement !== document.body"):
            assert_ring(page)
        if page.evaluate("selector => document.activeElement.matches(selector)", selector):
            return
    pytest.fail(f"{selector} never got focus with {'Shift+Tab' if back else 'Tab'} (last: {focused(page)})")


def press_tab_expecting(page, selector: str, *, back: bool = False) -> None:
    """One Tab (or Shift+Tab) lands on `selector`: nothing hidden or stray sits between."""
    page.keyboard.press("Shift+Tab" if back else "Tab")
    assert page.evaluate("selector => document.activeElement.matches(selector)", selector), (selector, focused(page))
    assert_ring(page)


def expect_step(page, number: int, count: int, title: str) -> None:
    """The step was swapped in and focus is on its heading, which says where you are."""
    heading = page.locator("#step-title")
    expect(heading).to_have_text(f"Step {number} of {count}: {title}")
    expect(heading).to_be_focused()
    assert_ring(page)
    expect(page).to_have_title(re.compile(rf"^Step {number} of {count}: {title} · Create Resource"))
    expect(page.locator("#wizard[data-kept=yes]")).to_have_count(1)  # a swap, not a page load


NEXT = ".wizard-actions button[value=next]"


def sign_in_and_open_wizard(page, live_server, username, env):
    page.goto(live_server.url + "/login/")
    expect(page.get_by_label("Username")).to_be_focused()  # autofocus
    page.keyboard.type(username)
    press_tab_expecting(page, "#id_password")
    page.keyboard.type("pw-" + username)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()
    page.goto(f"{live_server.url}/projects/shop/envs/{env}/")
    tab_to(page, "a.btn.primary")  # + Create Resource
    page.keyboard.press("Enter")
    expect(page.locator("#step-title")).to_have_text("Step 1 of 6: Source")
    page.evaluate("document.getElementById('wizard').dataset.kept = 'yes'")
    page.shots("1-source")


def source_to_binding(page):
    # Source: into the radio group (none chosen: the first), then the arrow key chooses the next.
    tab_to(page, "input[name=source_type]")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("radio", name=re.compile("Promote from environment"))).to_be_checked()
    press_tab_expecting(page, NEXT)
    page.keyboard.press("Enter")

    expect_step(page, 2, 6, "Source environment")
    page.shots("2-source-environment")
    press_tab_expecting(page, "input[name=source_env]")
    page.keyboard.press("Space")
    expect(page.get_by_role("radio", name="dev")).to_be_checked()
    press_tab_expecting(page, NEXT)
    page.keyboard.press("Enter")

    expect_step(page, 3, 6, "Source resource")
    page.shots("3-source-resource")
    press_tab_expecting(page, "input[name=promote_from]")
    page.keyboard.press("Space")
    press_tab_expecting(page, NEXT)
    page.keyboard.press("Space")  # a button answers Space as well as Enter

    expect_step(page, 4, 6, "Binding")


def test_track_latest_with_the_keyboard_alone(page, live_server, world):
    sign_in_and_open_wizard(page, live_server, "developer", "staging")
    source_to_binding(page)

    # Binding: Track latest; the pin's digest field and picker are not there (nor in the tab order).
    press_tab_expecting(page, "#id_binding")
    page.keyboard.press("Space")
    expect(page.get_by_role("radio", name=re.compile("Track latest"))).to_be_checked()
    expect(page.locator("#pin-fields")).to_be_hidden()
    expect(page.get_by_role("textbox", name=re.compile("Digest to pin"))).to_have_count(0)
    page.shots("4-binding")
    press_tab_expecting(page, NEXT)
    page.keyboard.press("Enter")

    # Configuration: track latest's own settings are shown. A bad name: focus goes to the error summary.
    expect_step(page, 5, 6, "Configuration")
    expect(page.get_by_label("Track latest follows")).to_be_visible()
    expect(page.get_by_label("Soak time (seconds)")).to_be_visible()
    press_tab_expecting(page, "#id_name")
    page.keyboard.type("Bad Name")
    press_tab_expecting(page, "#id_runtime")
    press_tab_expecting(page, "#id_ports")
    page.keyboard.type("8080")
    page.keyboard.press("Enter")  # Enter in a field moves on (the form's default button is Next)
    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Name must be")
    expect(page.locator("#step-title")).to_have_text("Step 5 of 6: Configuration")
    page.shots("5-config-error")
    press_tab_expecting(page, ".error-summary a")
    page.keyboard.press("Enter")  # the summary's link takes focus to its field
    expect(page.get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("web")
    page.shots("5-config")
    page.keyboard.press("Enter")

    # Review, Back (nothing lost), forward again, Create.
    expect_step(page, 6, 6, "Review")
    expect(page.locator("#wizard")).to_contain_text("Track latest")
    page.shots("6-review")
    press_tab_expecting(page, "button[value=create]")
    press_tab_expecting(page, "button[value=back]")
    page.keyboard.press("Enter")
    expect_step(page, 5, 6, "Configuration")
    expect(page.get_by_label("Name", exact=True)).to_have_value("web")
    expect(page.get_by_label("Ports")).to_have_value("8080")
    tab_to(page, NEXT)
    tab_to(page, "#id_replicas", back=True)  # Shift+Tab back up the form
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    expect_step(page, 6, 6, "Review")
    press_tab_expecting(page, "button[value=create]")
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(r"/projects/shop/envs/staging/resources/web/$"))
    page.shots("7-resource")
    created = Resource.objects.get(environment=world["staging"], name="web")
    assert (created.binding, created.replicas, created.ports[0]["port"]) == (Binding.TRACK_LATEST, 2, 8080)


def test_pin_to_digest_with_the_keyboard_alone(page, live_server, world):
    sign_in_and_open_wizard(page, live_server, "maintainer", "prod")
    source_to_binding(page)

    # Binding: the arrow key chooses Pin to digest, and its digest field appears after the choices.
    expect(page.locator("#pin-fields")).to_be_hidden()
    press_tab_expecting(page, "#id_binding")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("radio", name=re.compile("Pin to digest"))).to_be_checked()
    expect(page.locator("#pin-fields")).to_be_visible()
    press_tab_expecting(page, "#id_pinned_digest")
    page.keyboard.type("sha256:nope")
    expect(page.locator("#pinned_digest-errors")).to_contain_text("64 lower-case hex")
    page.shots("4-binding-bad-digest")
    # The picker: into its radios (the newest first), the arrow key picks the older publish.
    press_tab_expecting(page, "input[name=digest_pick]")
    page.keyboard.press("ArrowDown")
    digest_field = page.get_by_role("textbox", name=re.compile("Digest to pin"))
    expect(digest_field).to_have_value(digest(1))
    expect(page.locator("#pinned_digest-errors")).to_contain_text("valid digest")
    press_tab_expecting(page, "#id_pinned_digest", back=True)
    page.shots("4-binding")
    page.keyboard.press("Enter")

    # Configuration: nothing about tracking for a pin.
    expect_step(page, 5, 6, "Configuration")
    expect(page.locator("#id_follow, #id_soak_seconds")).to_have_count(0)
    press_tab_expecting(page, "#id_name")
    page.keyboard.type("web")
    tab_to(page, "#id_replicas")
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("3")
    # "Add variables" from the keyboard: focus goes to the first empty row.
    tab_to(page, "button[value=add_env]")
    page.keyboard.press("Enter")
    expect(page.locator("#id_env-0-name")).to_be_focused()
    expect(page.locator("input[name$=-name]")).to_have_count(4)
    page.keyboard.type("MODE")
    press_tab_expecting(page, "#id_env-0-value")
    page.keyboard.type("prod")
    page.shots("5-config")
    page.keyboard.press("Enter")

    expect_step(page, 6, 6, "Review")
    expect(page.locator("#wizard")).to_contain_text(digest(1))
    page.shots("6-review")
    press_tab_expecting(page, "button[value=create]")
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(r"/projects/shop/envs/prod/resources/web/$"))
    page.shots("7-resource")
    created = Resource.objects.get(environment=world["prod"], name="web")
    assert (created.binding, created.pinned_digest, created.replicas) == (Binding.PIN_DIGEST, digest(1), 3)
    assert created.env_vars.get(name="MODE").value == "prod"


def test_without_javascript_the_digest_field_shows_saying_when_it_applies(page_without_js, live_server, world):
    page = page_without_js
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill("maintainer")
    page.get_by_label("Password").fill("pw-maintainer")
    page.get_by_role("button", name="Sign in").click()
    page.goto(live_server.url + "/projects/shop/envs/prod/new-resource/")
    page.get_by_role("radio", name=re.compile("Promote from environment")).check()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("radio", name="dev").check()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("radio", name=re.compile(r"\bweb\b")).check()
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#step-title")).to_have_text("Step 4 of 6: Binding")
    # Nothing chosen yet: the server marks the field hidden, and hoist.css shows it when no script runs.
    expect(page.locator("#pin-fields[hidden]")).to_have_count(1)
    field = page.get_by_role("textbox", name=re.compile(r"Digest to pin \(Pin to digest only\)"))
    expect(field).to_be_visible()
    page.get_by_role("radio", name=re.compile("Pin to digest")).check()
    field.fill(digest(2))
    page.shots("4-binding-no-js")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#step-title")).to_have_text("Step 5 of 6: Configuration")
