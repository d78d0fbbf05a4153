"""Every kind of page works under the Content-Security-Policy, and the browser refuses nothing.

A listener installed before any page script reports each `securitypolicyviolation`
event to the test, and the console is watched for Chromium's "Refused to … Content
Security Policy" errors. The walk covers the login pages, the project pages, the Create
Resource wizard through its HTMX steps (and the pin picker, static/js/hoist.js), the
promotion pages, the tokens page, the admin and the API docs; then a deliberately
inline style checks that a violation would indeed be caught.
"""

import re

import pytest
from playwright.sync_api import expect

from environments import services as promotion_services
from environments.models import Binding
from tests.browser.test_promotion_flows import next_step
from tests.fixtures.domain import digest
from tests.fixtures.web import set_status

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(members, environments, make_resource, make_user):
    dev_web = make_resource(environments["dev"], "web", ports=[8080], env=[{"name": "API_KEY", "value": "s3cret", "secret": True}])
    for n in (1, 2):
        promotion_services.artifact_publish(resource=dev_web, digest=digest(n), tag=f"1.{n}")
    set_status(dev_web, digest(2), applied_seq=2)
    prod_web = make_resource(environments["prod"], "web", upstream=dev_web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    set_status(prod_web, digest(1))
    make_user("root", is_staff=True, is_superuser=True)  # a maintainer everywhere, and the admin's
    return {"dev_web": dev_web, "prod_web": prod_web, **environments}


@pytest.fixture
def refused(page):
    """What the policy refused, as the browser reported it (events and console errors)."""
    found = []
    page.expose_binding("reportViolation", lambda source, event: found.append(event))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => window.reportViolation({"
        "page: location.pathname, directive: e.violatedDirective, blocked: e.blockedURI,"
        "source: e.sourceFile, line: e.lineNumber, sample: e.sample}))"
    )
    page.on("console", lambda message: found.append({"console": message.text})
            if message.type == "error" and "Content Security Policy" in message.text else None)
    return found


def visit(page, refused, url, step):
    response = page.goto(url)
    assert response.status < 400, (url, response.status)
    assert "Content-Security-Policy" in {name.title() for name in response.headers}, url
    settle(page, refused, step)


def settle(page, refused, step):
    page.wait_for_load_state("networkidle")
    page.shots(step)
    assert refused == [], (step, refused)


def test_every_kind_of_page_passes_the_policy(page, live_server, world, refused):
    page.on("dialog", lambda dialog: dialog.accept())
    base = live_server.url

    # Signing in, on the site and in the admin.
    visit(page, refused, base + "/admin/login/", "admin-login")
    visit(page, refused, base + "/login/", "login")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("pw-root")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()
    settle(page, refused, "project-list")

    # The project's pages.
    visit(page, refused, base + "/projects/shop/", "project")
    visit(page, refused, base + "/projects/shop/envs/dev/", "environment")
    visit(page, refused, base + "/projects/shop/envs/dev/resources/web/", "resource")
    visit(page, refused, base + "/projects/shop/envs/dev/resources/web/edit/", "resource-edit")
    visit(page, refused, base + "/projects/shop/promotions/", "history")
    visit(page, refused, base + "/projects/shop/envs/prod/resources/web/promote/", "promote")

    # Editing a pin: the picker (static/js/hoist.js) fills the field, the change preview swaps in.
    visit(page, refused, base + "/projects/shop/envs/prod/resources/web/edit/", "pin-edit")
    digest_field = page.get_by_role("textbox", name=re.compile("Digest to pin"))
    page.locator(f"input[name=digest_pick][value='{digest(2)}']").check()
    expect(digest_field).to_have_value(digest(2))
    expect(page.locator("#changes")).to_contain_text(digest(2))
    digest_field.fill(digest(1))
    expect(page.locator(f"input[name=digest_pick][value='{digest(1)}']")).to_be_checked()
    settle(page, refused, "pin-edit-picked")

    # The Create Resource wizard, every step through HTMX, into staging.
    visit(page, refused, base + "/projects/shop/envs/staging/new-resource/", "wizard")
    page.get_by_label(re.compile("Promote from environment")).check()
    next_step(page, "Source environment")
    page.get_by_label("dev").check()
    next_step(page, "Source resource")
    page.get_by_role("radio", name=re.compile(r"\bweb\b")).check()
    next_step(page, "Binding")
    settle(page, refused, "wizard-steps")
    page.get_by_role("radio", name=re.compile("Pin to digest")).check()
    page.get_by_role("textbox", name=re.compile("Digest to pin")).fill("sha256:bad")
    expect(page.locator("#pinned_digest-errors")).to_contain_text("64 lower-case hex")
    page.locator(f"input[name=digest_pick][value='{digest(1)}']").check()
    expect(page.locator("#pinned_digest-errors")).to_contain_text("valid digest")
    settle(page, refused, "wizard-binding")
    next_step(page, "Configuration")
    page.get_by_label("Name", exact=True).fill("api")
    next_step(page, "Review")
    settle(page, refused, "wizard-review")
    page.get_by_role("button", name="Create Resource").click()
    expect(page).to_have_url(re.compile(r"/projects/shop/envs/staging/resources/api/$"))
    settle(page, refused, "wizard-created")

    # The pipeline's one-click promote (hx-post with a confirmation), and a live refresh.
    visit(page, refused, base + "/projects/shop/", "pipeline")
    page.locator('[data-resource="prod/web"]').get_by_role("link", name=re.compile("Promote")).click()
    expect(page.locator('[data-resource="prod/web"]')).to_contain_text(f"pin {digest(2)[7:15]}")
    settle(page, refused, "pipeline-promoted")

    # Tokens: the list, and a new key shown once.
    visit(page, refused, base + "/tokens/", "tokens")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name=re.compile("Create")).click()
    expect(page.locator("main")).to_contain_text("laptop")
    settle(page, refused, "token-created")

    # The admin: index, a list, a change form with inlines, an add form.
    visit(page, refused, base + "/admin/", "admin-index")
    visit(page, refused, base + "/admin/environments/resource/", "admin-list")
    visit(page, refused, base + f"/admin/environments/resource/{world['dev_web'].pk}/change/", "admin-change")
    visit(page, refused, base + "/admin/environments/environment/add/", "admin-add")

    # The API docs (their own, slightly looser policy: config/api_urls.py).
    visit(page, refused, base + "/api/docs/", "swagger")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Hoist API")
    page.locator(".opblock-summary-path[data-path='/api/v1/projects/']").first.click()
    settle(page, refused, "swagger-operation")
    page.goto(base + "/api/redoc/")
    expect(page.locator("redoc h1, #redoc-container h1").first).to_contain_text("Hoist API")
    page.wait_for_load_state("networkidle")
    # ReDoc 2.x always shows Redocly's logo from its CDN: img-src keeps it off, and nothing else.
    logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    assert all(r.get("blocked") == logo or logo in r.get("console", "") for r in refused), refused
    refused.clear()
    page.get_by_placeholder("Search...").fill("environments")  # ReDoc's search runs in a blob: worker
    expect(page.get_by_role("search").get_by_role("menuitem").first).to_contain_text("environments")
    settle(page, refused, "redoc")

    # The watch works: an inline style on a page of ours is refused and reported.
    visit(page, refused, base + "/projects/shop/", "self-check")
    page.evaluate("document.querySelector('main').insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')")
    page.wait_for_timeout(200)
    assert any(r.get("directive", "").startswith("style-src") for r in refused), refused


def test_the_lockout_page_passes_the_policy(page, live_server, world, refused):
    page.goto(live_server.url + "/login/")
    for attempt in range(5):
        page.get_by_label("Username").fill("maintainer")
        page.get_by_label("Password").fill(f"wrong-{attempt}")
        with page.expect_response(lambda r: r.url.endswith("/login/") and r.request.method == "POST") as answer:
            page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
    assert answer.value.status == 429
    expect(page.get_by_role("heading", name="Sign-in paused")).to_be_visible()
    settle(page, refused, "locked-out")
