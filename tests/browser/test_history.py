"""The promotion history in a real browser: filter it (HTMX swaps only the table and pushes the URL),
page through it with the filters kept, download the filtered CSV, and see a bad filter's error."""

import csv
import re

import pytest
from playwright.sync_api import expect

from environments import services
from environments.models import Binding
from promotions.models import Promotion
from tests.browser.test_promotion_flows import sign_in
from tests.fixtures.domain import digest
from tests.fixtures.web import set_status

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(members, environments, make_resource):
    """dev/web publishes 3 builds; staging follows; prod, pinned, has had 60 pin edits and one one-click promote."""
    dev_web = make_resource(environments["dev"], "web", ports=[8080])
    for n in (1, 2, 3):
        services.artifact_publish(resource=dev_web, digest=digest(n), tag=f"1.{n}")
    set_status(dev_web, digest(3), applied_seq=3)
    make_resource(environments["staging"], upstream=dev_web)
    prod_web = make_resource(environments["prod"], upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    Promotion.objects.bulk_create(Promotion(resource=prod_web, to_digest=digest(f"edit{n}"), reason="pin_edit",
                                            actor=members["maintainer"], status="superseded") for n in range(60))
    services.resource_promote_upstream_current(resource=prod_web, actor=members["maintainer"])
    return {"dev_web": dev_web, "prod_web": prod_web}


def test_filter_page_and_download_the_history(page, live_server, world, tmp_path):
    sign_in(page, live_server, "viewer")
    page.goto(live_server.url + "/projects/shop/promotions/")
    history = page.locator("#history")
    expect(history).to_contain_text("66 promotions, page 1 of 2")
    expect(history).to_contain_text("Promoted")
    page.shots("history")

    # Filter: only the table is swapped (the form keeps the mark set on it), and the URL says what's shown.
    page.evaluate("document.getElementById('history-filters').dataset.kept = 'yes'")
    page.get_by_label("Environment").select_option("prod")
    page.get_by_label("Cause").select_option("pin_edit")
    page.get_by_role("button", name="Filter").click()
    expect(history).to_contain_text("60 promotions matching the filters, page 1 of 2")
    expect(page).to_have_url(re.compile(r"environment=prod.*cause=pin_edit"))
    expect(page.locator("#history-filters[data-kept=yes]")).to_have_count(1)
    expect(history.locator("tbody tr")).to_have_count(50)
    expect(history.locator("tbody tr[data-cause=pin_edit]")).to_have_count(50)
    page.shots("filtered")

    # The next page keeps the filters.
    history.get_by_role("link", name="Older →").click()
    expect(page).to_have_url(re.compile(r"environment=prod&cause=pin_edit&page=2$"))
    expect(page.locator("#history")).to_contain_text("60 promotions matching the filters, page 2 of 2")
    expect(page.locator("#history tbody tr")).to_have_count(10)
    expect(page.get_by_label("Environment")).to_have_value("prod")
    expect(page.get_by_label("Cause")).to_have_value("pin_edit")
    page.shots("page-2")

    # The CSV: every filtered row, from every page.
    with page.expect_download() as caught:
        page.get_by_role("link", name="Download CSV").click()
    download = caught.value
    assert download.suggested_filename == "shop-promotions.csv"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with saved.open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 60 and {(row["environment"], row["cause"], row["who"]) for row in table} == {("prod", "pin_edit", "maintainer")}

    # A range that ends before it starts: the error sits next to "To", and nothing is shown.
    page.get_by_label("From").fill("2026-05-02")
    page.get_by_label("To", exact=True).fill("2026-05-01")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#date_to-errors")).to_have_text("“To” (2026-05-01) is before “From” (2026-05-02).")
    expect(page.locator("#history")).to_contain_text("fix the filters above")
    expect(page.locator("#history tbody tr")).to_have_count(0)
    page.shots("bad-range")

    # Fixing it clears the error (it came out of band with the table).
    page.get_by_label("To", exact=True).fill("")
    page.get_by_label("From").fill("")
    page.get_by_label("Cause").select_option("promote")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#history")).to_contain_text("1 promotion matching the filters, page 1 of 1")
    expect(page.locator("#date_to-errors")).to_have_text("")
    page.shots("promoted")


def test_the_filters_work_without_javascript(page_without_js, live_server, world):
    page = page_without_js
    page.goto(live_server.url + "/login/")
    page.get_by_label("Username").fill("viewer")
    page.get_by_label("Password").fill("pw-viewer")
    page.get_by_role("button", name="Sign in").click()
    page.goto(live_server.url + "/projects/shop/promotions/")
    page.get_by_label("Cause").select_option("promote")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"cause=promote"))
    expect(page.locator("#history")).to_contain_text("1 promotion matching the filters, page 1 of 1")
    page.shots("no-js-filtered")
