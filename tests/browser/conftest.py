"""Headless Chromium (Debian's) driven by Playwright against pytest-django's live server.

One browser per test session (per xdist worker); a fresh context (cookies,
storage) per test. Screenshots go to test-artifacts/browser/<test>/<n>-<step>.png.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="session")
def browser(django_db_setup):
    """Started after the test database exists, closed before it is torn down.

    Playwright's sync API keeps an event loop in this thread while the browser
    lives, which Django's async-safety check mistakes for async code; the
    test's own ORM calls are plain synchronous ones, so allow them meanwhile.
    """
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch(sync_playwright)
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _launch(sync_playwright):
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


class Shots:
    def __init__(self, page, folder: Path):
        self.page, self.folder, self.count = page, folder, 0
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, step: str) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        self.count += 1
        path = str(self.folder / f"{self.count:02d}-{step}.png")
        try:
            self.page.screenshot(path=path, full_page=True, timeout=20_000)
        except PlaywrightTimeout:
            # A very long page (the API reference grows with the API) on a busy machine: the
            # screenshot is a record of the step, not its check; keep what the viewport shows.
            self.page.screenshot(path=path, timeout=20_000)


def _context_page(browser, request, monkeypatch, **options):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
    # Generous: the suite runs on two cores beside another test worker, and the API reference
    # pages render a schema that grows with the API. A failure still fails, only later.
    context.set_default_timeout(20_000)
    page = context.new_page()
    request.addfinalizer(context.close)
    page.shots = Shots(page, ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name))
    return page


@pytest.fixture
def page(browser, request, monkeypatch):
    return _context_page(browser, request, monkeypatch)


@pytest.fixture
def page_without_js(browser, request, monkeypatch):
    return _context_page(browser, request, monkeypatch, java_script_enabled=False)
