"""The API docs (Swagger UI at /api/docs/, ReDoc at /api/redoc/) work without the internet.

Their JavaScript and CSS come from drf-spectacular-sidecar's static files on this
server; the browser is refused every request that leaves the live server, and
the test asserts none was even attempted. The docs pages are public (as is the
schema they read), so no login here.

ReDoc 2.x always puts Redocly's logo (an <img> from cdn.redoc.ly) in its menu; the
site's Content-Security-Policy (img-src 'self' data:) stops it in the browser, before
any request, and the test checks that is all the policy stopped.
"""

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def outside(page, live_server):
    """Abort every request not to the live server; the list holds the URLs attempted."""
    attempted = []
    local = live_server.url + "/"

    def route(route):
        url = route.request.url
        if url.startswith(local):
            route.continue_()
        else:
            attempted.append(url)
            route.abort()

    page.route("**/*", route)
    return attempted


def test_swagger_ui_renders_from_local_assets(page, live_server, outside):
    static = []
    page.on("response", lambda response: static.append((response.url, response.status))
            if "/static/drf_spectacular_sidecar/" in response.url else None)
    page.goto(live_server.url + "/api/docs/")
    operation = page.locator('.opblock:has(.opblock-summary-path[data-path="/api/v1/projects/"])')
    expect(operation.first).to_be_visible()
    expect(page.locator(".opblock-get .opblock-summary-path[data-path='/api/v1/projects/']")).to_have_count(1)
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Hoist API")
    page.shots("swagger-ui")
    assert outside == []
    served = {re.sub(r"^.*/static/drf_spectacular_sidecar/", "", url): status for url, status in static}
    assert served.get("swagger-ui-dist/swagger-ui-bundle.js") == 200
    assert served.get("swagger-ui-dist/swagger-ui.css") == 200


def test_redoc_renders_from_local_assets(page, live_server, outside):
    static = []
    page.on("response", lambda response: static.append((response.url, response.status))
            if "/static/drf_spectacular_sidecar/" in response.url else None)
    # What the page's Content-Security-Policy refused (never reaches the network, or the route above).
    page.add_init_script("window.refused = []; document.addEventListener('securitypolicyviolation', "
                         "e => window.refused.push(e.blockedURI))")
    page.goto(live_server.url + "/api/redoc/")
    expect(page.locator("#redoc-container h1, redoc h1").first).to_contain_text("Hoist API")
    # The operation's own section: its id, and the path it is served at.
    operation = page.locator('[data-section-id="tag/projects/operation/projects_list"]')
    expect(operation).to_be_attached()
    expect(operation).to_contain_text("/api/v1/projects/")
    page.shots("redoc")
    assert outside == []
    assert any(url.endswith("/redoc/bundles/redoc.standalone.js") and status == 200 for url, status in static)
    # Only the Redocly logo ReDoc always shows is kept off by the CSP: nothing the docs need.
    assert set(page.evaluate("window.refused")) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}
