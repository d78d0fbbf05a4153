"""The pipeline's live refresh in a real browser: htmx sends the version it shows, an unchanged
page answers 204 and the DOM stays as it is (focus, an opened detail, scroll); a change is
swapped in at the next refresh."""

import pytest
from playwright.sync_api import expect

from environments.models import Phase, Resource
from tests.browser.test_promotion_flows import sign_in
from tests.fixtures.domain import digest
from tests.fixtures.web import set_status

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_unchanged_pipeline_is_not_swapped_and_a_change_is(page, live_server, members, environments, make_resource):
    dev = environments["dev"]
    web = make_resource(dev, "web", image="registry.example.com/shop/web:1")
    set_status(web, digest("web-1"))
    sign_in(page, live_server, "maintainer")
    page.goto(live_server.url + "/projects/shop/")
    expect(page.locator("#pipeline")).to_contain_text("Healthy")
    # A marker only the current DOM node carries: a swap replaces the node and loses it.
    page.evaluate("document.getElementById('pipeline').dataset.marker = 'first render'")
    with page.expect_response(lambda r: r.url.endswith("/projects/shop/") and r.request.headers.get("hx-request")) as seen:
        pass  # the next refresh (every 5 s)
    refresh = seen.value
    assert refresh.status == 204 and refresh.request.headers.get("x-hoist-version")
    page.wait_for_timeout(300)  # htmx has handled the answer
    assert page.evaluate("document.getElementById('pipeline').dataset.marker") == "first render"
    page.shots("unchanged")

    Resource.objects.filter(pk=web.pk).update(phase=Phase.PROGRESSING, rollout_ready=1, rollout_total=2)
    with page.expect_response(lambda r: r.url.endswith("/projects/shop/") and r.request.headers.get("hx-request")) as seen:
        pass
    assert seen.value.status == 200
    expect(page.locator("#pipeline")).to_contain_text("rolling out 1/2")
    assert page.evaluate("document.getElementById('pipeline').dataset.marker") is None
    page.shots("changed")
