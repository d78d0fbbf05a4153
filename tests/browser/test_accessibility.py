"""axe-core on every page and every Create Resource wizard step: no serious or critical violation.

`PAGES` is the list of pages (and page states: a form showing its errors, a fragment after an
HTMX refresh): one line each, one test, one screenshot and one axe report (tests/browser/axe.py)
per entry. `test_every_page_is_checked` fails when a named URL of web/urls.py is neither in it,
nor walked by the wizard tests, nor exempted below with its reason, so a new page can't skip the
check. The wizard tests walk both paths (Image, Promote from environment) step by step through
the HTMX swaps, with a step showing validation errors on each.

Reconcile doesn't run (no worker): where a page should show a running digest the test writes the
status as reconcile would (set_status).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

import pytest
from django.conf import settings
from django.test import Client
from django.urls import NoReverseMatch, URLPattern, URLResolver, reverse
from django.utils import timezone
from playwright.sync_api import expect

from environments import freeze
from environments import services as env_services
from environments.models import Binding, Environment, Phase, RegistryHost
from projects import services as project_services
from projects.models import Membership, Role
from promotions import notifications
from tests.browser.axe import AXE_JS, assert_accessible, describe, require_axe, run, serious
from tests.fixtures.domain import digest
from tests.fixtures.web import set_status

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


# --- The world the pages show: every section of every page has something in it. ----------------

@pytest.fixture
def world(members, project, environments, make_resource, make_user):
    dev, staging, prod = environments["dev"], environments["staging"], environments["prod"]
    dev_web = make_resource(dev, "web", ports=[8080], env=[{"name": "API_KEY", "value": "s3cret", "secret": True},
                                                           {"name": "MODE", "value": "demo"}])
    for n in (1, 2):
        env_services.artifact_publish(resource=dev_web, digest=digest(n), tag=f"1.{n}")
    set_status(dev_web, digest(2), applied_seq=2)
    worker = make_resource(dev, "worker", image="registry.example.com/shop/worker:1.0")  # its rollout failed
    env_services.artifact_publish(resource=worker, digest=digest(3), tag="1.0")
    set_status(worker, digest(3), applied_seq=1, phase=Phase.FAILED)
    staging_web = make_resource(staging, upstream=dev_web, ports=[8080], replicas=2)
    set_status(staging_web, digest(2), applied_seq=2)
    prod_web = make_resource(prod, upstream=staging_web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    set_status(prod_web, digest(1))

    # Approvals: prod needs one; another maintainer (mia) asked to move the pin, the maintainer decides.
    Environment.objects.filter(pk=prod.pk).update(required_approvals=1)
    prod_web.environment.required_approvals = 1
    mia = make_user("mia")
    Membership.objects.create(project=project, user=mia, role=Role.MAINTAINER)
    env_services.resource_pin(resource=prod_web, digest=digest(2), actor=mia)

    maintainer = members["maintainer"]
    # A freeze window that is on now (the environment's "frozen" badge and note), one weekly.
    now = timezone.now()
    freeze.freeze_window_create(environment=staging, actor=maintainer, name="Release", kind="once", timezone="UTC",
                                starts_at=(now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
                                ends_at=(now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
    freeze.freeze_window_create(environment=staging, actor=maintainer, name="Nights", kind="weekly",
                                weekdays=[4], start_time="22:00", end_time="06:00", timezone="Europe/Berlin")
    notifications.webhook_create(project=project, name="ops", url="https://hooks.example.com/hoist",
                                 secret="receiver-s3cret-0123456789abcdef", actor=maintainer)
    project_services.token_create(user=maintainer, name="ci", actor=maintainer)
    RegistryHost.objects.get_or_create(host="registry.example.com")
    make_user("root", is_staff=True, is_superuser=True)
    return {"dev_web": dev_web, "staging_web": staging_web, "prod_web": prod_web, **environments}


def sign_in_as(page, live_server, username: str) -> None:
    """A session cookie (as `force_login` makes one): signing in itself is checked on the login page."""
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "url": live_server.url,
                               "value": client.cookies[settings.SESSION_COOKIE_NAME].value}])


# --- What to do on a page after loading it, before axe runs. ------------------------------------

def failed_sign_in(page):
    page.get_by_label("Username").fill("maintainer")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".error-summary")).to_be_visible()


def locked_out(page):
    for attempt in range(5):
        page.get_by_label("Username").fill("maintainer")
        page.get_by_label("Password").fill(f"wrong-{attempt}")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
    expect(page.get_by_role("heading", name="Sign-in paused")).to_be_visible()


def refreshed(selector: str) -> Callable:
    """Wait for the fragment's own HTMX refresh (hx-trigger "every 5s") to swap it. An unchanged
    page answers 204 and is not swapped, so the fragment first forgets the version it shows."""

    def action(page):
        page.locator(selector).evaluate("element => { element.dataset.beforeRefresh = 'yes';"
                                        " element.setAttribute('hx-headers', '{\"X-Hoist-Version\": \"stale\"}'); }")
        expect(page.locator(f"{selector}[data-before-refresh]")).to_have_count(0, timeout=15_000)
        expect(page.locator(selector)).to_be_visible()

    return action


def webhook_refused(page):
    page.get_by_label("Name").fill("ci")
    page.get_by_label("URL").fill("ftp://ci.example.com/")
    page.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#url-errors")).to_contain_text("https://")


def freeze_refused(page):
    form = page.locator("form.freeze-form")
    form.get_by_label("Name", exact=True).fill("Nights")
    form.get_by_label("Every week").check()
    form.get_by_label("Time zone").fill("Europe/Nowhere")
    form.get_by_role("button", name="Add freeze window").click()
    expect(page.locator("#timezone-errors")).to_contain_text("is not a time zone")


def pin_changed(page):
    field = page.get_by_role("textbox", name=re.compile("Digest to pin"))
    field.fill(digest(2))
    field.press("Tab")  # a change event: the preview follows
    expect(page.locator("#changes")).to_contain_text(digest(2))


def edit_refused(page):
    page.get_by_label("Replicas").fill("-1")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#replicas-errors")).not_to_be_empty()


def token_created(page):
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name=re.compile("Create")).click()
    expect(page.locator("main")).to_contain_text("laptop")


def swagger_ready(page):
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Hoist API")
    page.locator(".opblock-summary-path[data-path='/api/v1/projects/']").first.click()  # one operation open
    expect(page.locator(".opblock.is-open").first).to_be_visible()


def redoc_ready(page):
    expect(page.locator("#redoc-container h1, redoc h1").first).to_contain_text("Hoist API")


# --- Every page. --------------------------------------------------------------------------------

SHOP = {"project": "shop"}


def env(slug: str) -> dict:
    return {**SHOP, "env": slug}


def resource(env_slug: str, name: str = "web") -> dict:
    return {**env(env_slug), "name": name}


@dataclass(frozen=True)
class Page:
    id: str  # the test's id, and the screenshot's and the report's name
    url_name: str  # the named URL it loads (the check that every page is here reads it)
    kwargs: dict = field(default_factory=dict)
    user: str | None = "maintainer"  # signed in as (None: not signed in)
    status: int = 200
    then: Callable | None = None  # what the test does on the page before axe runs
    # (rule id, CSS selector, why): one rule's findings in third-party markup Hoist can't change, set aside
    # (the report lists them under "waived"); everything else on the page is still checked.
    waive: tuple[tuple[str, str, str], ...] = ()

    def __str__(self):
        return self.id


PAGES = [
    Page("login", "login", user=None),
    Page("login-refused", "login", user=None, then=failed_sign_in),
    Page("login-locked-out", "login", user=None, then=locked_out),
    Page("projects", "project_list"),
    Page("pipeline", "project_detail", SHOP),
    Page("pipeline-refreshed", "project_detail", SHOP, then=refreshed("#pipeline")),
    # Being added (issue 16): skipped until the URL name exists, checked from then on.
    Page("graph", "project_graph", SHOP),
    Page("history", "project_promotions", SHOP),
    Page("approvals", "project_approvals", SHOP),
    Page("notifications", "project_notifications", SHOP),
    Page("notifications-refused", "project_notifications", SHOP, then=webhook_refused),
    Page("environment", "environment_detail", env("staging")),  # freeze windows: on this page
    Page("environment-viewer", "environment_detail", env("staging"), user="viewer"),
    Page("freeze-window-refused", "freeze_window_add", env("staging"), then=freeze_refused),
    Page("resource-image", "resource_detail", resource("dev")),
    Page("resource-pinned", "resource_detail", resource("prod")),  # awaiting approval
    Page("resource-failed", "resource_detail", resource("dev", "worker")),
    Page("resource-refreshed", "resource_detail", resource("staging"), then=refreshed("#resource-live")),
    Page("edit", "resource_edit", resource("staging")),
    Page("edit-refused", "resource_edit", resource("dev"), then=edit_refused),
    Page("edit-pin-changes", "resource_edit", resource("prod"), then=pin_changed),
    Page("promote", "resource_promote", resource("prod")),
    Page("tokens", "token_list"),
    Page("token-created", "token_list", then=token_created),
    Page("registries", "registry_list", user="root"),
    Page("403", "registry_list", status=403),  # staff only
    Page("404", "project_detail", {"project": "nope"}, status=404),
    Page("api-docs", "api-docs", user=None, then=swagger_ready, waive=(
        # Swagger UI renders each operation's summary as a <button> holding the operation's deep link (<a>): its
        # own markup (swagger-ui's OperationSummary), not Hoist's. Turning deepLinking off would drop the link.
        ("nested-interactive", ".swagger-ui .opblock-summary-control", "Swagger UI's operation summary markup"),
    )),
    Page("api-redoc", "api-redoc", user=None, then=redoc_ready),
]

# Named URLs of web/urls.py that are no HTML page to check, each with why.
EXEMPT = {
    "project_promotions_csv": "a CSV download (the history page's export link), no HTML",
    "logout": "POST only (the top bar's Sign out button); redirects to the login page",
    "token_revoke": "POST only (a button on the tokens page); redirects back to it",
    "webhook_test": "POST only (a button on the notifications page); answers with its #hooks fragment",
    "webhook_toggle": "POST only (a button on the notifications page); answers with its #hooks fragment",
    "webhook_delete": "POST only (a button on the notifications page); answers with its #hooks fragment",
    "change_request_decide": "POST only (Approve/Reject on the approvals and resource pages); redirects back",
    "freeze_window_remove": "POST only (Delete on the environment page); redirects back to it",
}
# Being added beside this test (issue 16): PAGES and EXEMPT may name them before web/urls.py has them.
UPCOMING = {"project_graph", "project_promotions_csv"}
# Walked by the wizard tests below: the wizard, and its digest check (the binding step's live errors).
WIZARD_URLS = {"resource_new", "digest_check"}


@pytest.mark.parametrize("target", PAGES, ids=str)
def test_page_has_no_serious_accessibility_violations(page, live_server, world, target):
    require_axe()
    try:
        path = reverse(target.url_name, kwargs=target.kwargs)
    except NoReverseMatch:
        pytest.skip(f"the URL {target.url_name!r} does not exist yet")
    if target.url_name == "freeze_window_add":  # a POST: the form is on the environment page
        path = reverse("environment_detail", kwargs=target.kwargs)
    if target.user:
        sign_in_as(page, live_server, target.user)
    response = page.goto(live_server.url + path)
    assert response.status == target.status, (path, response.status)
    page.wait_for_load_state("networkidle")
    if target.then:
        target.then(page)
        page.wait_for_load_state("networkidle")
    assert_accessible(page, target.id, waive=target.waive)


def web_url_names(patterns=None) -> set[str]:
    from web import urls

    names = set()
    for pattern in urls.urlpatterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            names |= web_url_names(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(pattern.name)
    return names


@pytest.mark.django_db  # no browser, no rows: the module's transactional database isn't needed
def test_every_page_is_checked():
    names = web_url_names()
    checked = {target.url_name for target in PAGES} | WIZARD_URLS
    missing = names - checked - set(EXEMPT)
    assert not missing, (f"named URLs of web/urls.py with no accessibility check: {sorted(missing)}; add a line to "
                         "PAGES in tests/browser/test_accessibility.py (or to EXEMPT, with the reason, for a POST-only one)")
    stale = set(EXEMPT) - names - UPCOMING
    assert not stale, f"exempted URLs that no longer exist: {sorted(stale)}"
    assert not set(EXEMPT) & checked, "an exempted URL is also checked: drop its exemption"
    assert len({target.id for target in PAGES}) == len(PAGES), "two PAGES entries share an id"


# --- The Create Resource wizard, step by step through its HTMX swaps. ----------------------------

class Steps:
    """Runs axe at each step; collects every step's failures so one run reports them all."""

    def __init__(self, page):
        self.page, self.failures = page, []

    def check(self, name: str) -> None:
        self.page.wait_for_load_state("networkidle")
        try:
            assert_accessible(self.page, name)
        except pytest.fail.Exception as failure:
            self.failures.append(f"[{name}] {failure}")

    def done(self) -> None:
        if self.failures:
            pytest.fail("\n\n".join(self.failures), pytrace=False)


def next_step(page, title: str) -> None:
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#step-title")).to_contain_text(title)


def test_the_image_wizard_has_no_serious_accessibility_violations(page, live_server, world):
    require_axe()
    steps = Steps(page)
    sign_in_as(page, live_server, "maintainer")
    page.goto(live_server.url + reverse("resource_new", kwargs=env("dev")))
    expect(page.locator("#step-title")).to_contain_text("Step 1 of")
    page.evaluate("document.getElementById('wizard').dataset.kept = 'yes'")  # proves the steps are HTMX swaps
    steps.check("1-source")
    page.get_by_role("radio", name=re.compile(r"^\s*Image")).check()
    next_step(page, "Image")
    steps.check("2-image")
    page.get_by_role("button", name="Next").click()  # no image reference: the error shows
    expect(page.locator("#image-errors")).not_to_be_empty()
    steps.check("2-image-error")
    page.get_by_label("Image reference").fill("registry.example.com/shop/api:1.0")
    next_step(page, "Configuration")
    steps.check("3-config")
    page.get_by_role("button", name="Add variables").click()
    expect(page.get_by_label("Variable 3 name")).to_be_visible()
    steps.check("3-config-more-variables")
    page.get_by_label("Name", exact=True).fill("Bad Name")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#name-errors")).to_contain_text("Name must be")
    steps.check("3-config-error")
    page.get_by_label("Name", exact=True).fill("api")
    next_step(page, "Review")
    expect(page.locator("#wizard[data-kept=yes]")).to_have_count(1)
    steps.check("4-review")
    steps.done()


def test_the_promote_wizard_has_no_serious_accessibility_violations(page, live_server, world):
    require_axe()
    steps = Steps(page)
    sign_in_as(page, live_server, "maintainer")
    page.goto(live_server.url + reverse("resource_new", kwargs=env("prod")))
    expect(page.locator("#step-title")).to_contain_text("Step 1 of")
    page.evaluate("document.getElementById('wizard').dataset.kept = 'yes'")
    page.get_by_label(re.compile("Promote from environment")).check()
    steps.check("1-source-promote")
    next_step(page, "Source environment")
    steps.check("2-source-environment")
    page.get_by_label("dev").check()
    next_step(page, "Source resource")
    steps.check("3-source-resource")
    page.get_by_role("radio", name=re.compile(r"\bweb\b")).check()
    next_step(page, "Binding")
    steps.check("4-binding")
    page.get_by_role("radio", name=re.compile("Pin to digest")).check()
    page.get_by_role("textbox", name=re.compile("Digest to pin")).fill("sha256:bad")
    expect(page.locator("#pinned_digest-errors")).to_contain_text("64 lower-case hex")  # the live digest check
    steps.check("4-binding-bad-digest")
    page.locator(f"input[name=digest_pick][value='{digest(1)}']").check()
    expect(page.locator("#pinned_digest-errors")).to_contain_text("valid digest")
    steps.check("4-binding-picked")
    next_step(page, "Configuration")
    steps.check("5-config")
    page.get_by_label("Name", exact=True).fill("api")
    next_step(page, "Review")
    expect(page.locator("#wizard[data-kept=yes]")).to_have_count(1)
    steps.check("6-review")
    page.get_by_role("button", name="Create Resource").click()
    expect(page).to_have_url(re.compile(r"/projects/shop/envs/prod/resources/api/$"))
    steps.check("7-created")  # the resource page with its "created" message
    steps.done()


# --- The checker itself. -------------------------------------------------------------------------

def test_axe_runs_under_the_content_security_policy_and_finds_violations(page, live_server, world):
    """axe loads through evaluate although the page's policy refuses inline script (a <script>
    tag with axe's source is refused), and a violation put into the page is reported."""
    require_axe()
    response = page.goto(live_server.url + reverse("login"))
    assert "script-src 'self'" in response.headers["content-security-policy"]
    refused = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None)
    try:
        page.add_script_tag(content=AXE_JS.read_text())
    except Exception:  # noqa: BLE001 (refused either way: what matters is that axe did not load)
        pass
    assert page.evaluate("typeof window.axe") == "undefined"
    assert refused, "the policy should have refused the inline <script>"
    assert serious(run(page)) == []
    page.evaluate("document.querySelector('main').insertAdjacentHTML('beforeend', '<img src=\"/x.png\"><input>')")
    found = serious(run(page))
    assert {v["id"] for v in found} >= {"image-alt", "label"}, found
    assert "image-alt (critical)" in describe(found, page.url)
