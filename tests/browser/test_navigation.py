"""The top bar in a browser: its sections reached with the keyboard (each showing a focus ring on
the dark bar), the current one marked, and nothing running off the side at a phone's width."""

import pytest
from playwright.sync_api import expect

from projects import services
from tests.browser.test_promotion_flows import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OVERFLOW = "el => el.scrollWidth - el.clientWidth"


def test_the_keyboard_reaches_every_section(page, live_server, pipeline_world, make_user):
    make_user("root", is_staff=True, is_superuser=True)
    sign_in(page, live_server, "root")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Projects", "Tokens", "API docs", "Registries", "Admin"])
    expect(nav.get_by_role("link", name="Projects")).to_have_attribute("aria-current", "page")
    page.keyboard.press("Tab")  # Skip to content
    page.keyboard.press("Tab")  # Hoist
    for name in ("Projects", "Tokens", "API docs", "Registries", "Admin"):
        page.keyboard.press("Tab")
        link = nav.get_by_role("link", name=name)
        expect(link).to_be_focused()
        ring = link.evaluate("el => { const s = getComputedStyle(el); return [s.outlineStyle, s.outlineColor]; }")
        assert ring[0] != "none" and ring[1] == "rgb(255, 255, 255)", (name, ring)  # light on the dark bar
    nav.get_by_role("link", name="Tokens").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    expect(nav.get_by_role("link", name="Tokens")).to_have_attribute("aria-current", "page")
    expect(nav.get_by_role("link", name="Projects")).not_to_have_attribute("aria-current", "page")
    page.shots("tokens")


@pytest.mark.parametrize("width", [320, 480])
def test_narrow_widths_wrap_without_running_off_the_side(page, live_server, pipeline_world, make_user, width):
    staff = make_user("root", is_staff=True, is_superuser=True)
    services.token_create(user=staff, name="a-rather-long-token-name-for-ci-deploys")
    page.set_viewport_size({"width": width, "height": 800})
    sign_in(page, live_server, "root")
    for path in ("/", "/tokens/", "/projects/shop/envs/staging/resources/web/edit/"):
        page.goto(live_server.url + path)
        header = page.locator("header.topbar")
        assert header.evaluate(OVERFLOW) <= 0, path
        for link in page.get_by_role("navigation", name="Main").get_by_role("link").all():
            box = link.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (path, link.inner_text(), box)
        if path != "/projects/shop/envs/staging/resources/web/edit/":  # pages of this change; tables scroll in their own box
            assert page.locator("html").evaluate(OVERFLOW) <= 0, path
        page.shots(f"{width}{path.replace('/', '-')}")
