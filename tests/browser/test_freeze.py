"""Freeze windows in a real browser, under the Content-Security-Policy: a maintainer adds a weekly
window and a once window that is on now, sees a refused one's errors in place, the environment
and the pipeline show the freeze and its thaw, and a window is deleted."""

import pytest
from playwright.sync_api import expect

from environments.models import FreezeWindow
from tests.browser.test_content_security_policy import refused  # noqa: F401 (a fixture)
from tests.browser.test_promotion_flows import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_maintainer_freezes_an_environment(page, live_server, members, environments, refused):  # noqa: F811
    sign_in(page, live_server, "maintainer")
    page.goto(f"{live_server.url}/projects/shop/envs/staging/")
    form = page.locator("form.freeze-form")

    # A weekly window with a mistake: the error shows next to the field, what was typed stays.
    form.get_by_label("Name", exact=True).fill("Nights")
    form.get_by_label("Every week").check()
    form.get_by_label("Fri").check()
    form.get_by_label("From", exact=True).fill("22:00")
    form.get_by_label("Time zone").fill("Europe/Nowhere")
    form.get_by_role("button", name="Add freeze window").click()
    expect(page.locator("#timezone-errors")).to_contain_text("is not a time zone")
    expect(page.locator("#end_time-errors")).to_contain_text("Required for a weekly window")
    expect(form.get_by_label("Name", exact=True)).to_have_value("Nights")
    page.shots("refused")

    form.get_by_label("To", exact=True).fill("06:00")
    form.get_by_label("Time zone").fill("Europe/Berlin")
    form.get_by_role("button", name="Add freeze window").click()
    expect(page.get_by_text("Freeze window Nights added")).to_be_visible()
    expect(page.locator("#freeze-windows")).to_contain_text("weekly, Fri 22:00 → 06:00 (next day) Europe/Berlin")

    # A once window that is on now: the environment is frozen.
    form.get_by_label("Name", exact=True).fill("Release")
    form.get_by_label("Once: from a date and time to another").check()
    form.get_by_label("Starts", exact=True).fill("2020-01-01T00:00")
    form.get_by_label("Ends", exact=True).fill("2099-01-01T00:00")
    form.get_by_label("Time zone").fill("UTC")
    form.get_by_role("button", name="Add freeze window").click()
    expect(page.locator("h1 .badge.frozen")).to_have_text("frozen until 2099-01-01 00:00 UTC")
    expect(page.locator("#freeze-windows .note")).to_contain_text("Frozen until 2099-01-01 00:00 UTC (Release, Nights)")  # Nights falls inside it
    page.shots("frozen")

    page.goto(f"{live_server.url}/projects/shop/")
    header = page.locator("table.grid thead th").filter(has_text="staging")
    expect(header.locator(".badge.frozen")).to_have_text("frozen")
    expect(header).to_contain_text("thaws 2099-01-01 00:00 UTC")
    page.shots("pipeline")

    page.goto(f"{live_server.url}/projects/shop/envs/staging/")
    page.get_by_role("button", name="Delete freeze window Release").click()
    expect(page.get_by_text("Freeze window Release deleted")).to_be_visible()
    expect(page.locator("h1 .badge.frozen")).to_have_count(0)
    assert list(FreezeWindow.objects.values_list("name", flat=True)) == ["Nights"]
    assert refused == []
