"""Every HTML response carries the Content-Security-Policy, and no template needs it loosened.

The browser test (tests/browser/test_content_security_policy.py) shows the pages work under it;
this one pins the header itself, page by page, and keeps inline code out of the templates.
"""

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

SITE_POLICY = {
    "default-src": "'self'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self' data:",
    "object-src": "'none'", "base-uri": "'self'", "frame-ancestors": "'none'", "form-action": "'self'",
}


def policy(response) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy")
    assert header, (response.status_code, response.headers)
    return dict(part.strip().split(" ", 1) for part in header.split(";") if part.strip())


@pytest.fixture
def superuser_client(client, make_user):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_the_sign_in_pages_carry_the_policy(client, db, url):
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    assert policy(response) == SITE_POLICY


@pytest.mark.parametrize("url", [
    "/", "/projects/shop/", "/projects/shop/promotions/", "/projects/shop/envs/dev/", "/projects/shop/envs/dev/new-resource/",
    "/projects/shop/envs/dev/resources/web/", "/projects/shop/envs/dev/resources/web/edit/", "/tokens/",
    "/admin/", "/admin/environments/resource/", "/admin/environments/cluster/add/", "/api/docs/",
    "/projects/shop/notifications/", "/admin/promotions/projectwebhook/add/",
])
def test_every_page_carries_the_strict_policy(superuser_client, dev_web, url):
    response = superuser_client.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    assert policy(response) == SITE_POLICY


def test_an_htmx_fragment_carries_it_too(superuser_client, dev_web):
    response = superuser_client.get("/projects/shop/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="pipeline")
    assert response.status_code == 200 and policy(response) == SITE_POLICY


def test_redoc_alone_may_use_inline_styles_and_a_blob_worker(client, db):
    response = client.get("/api/redoc/")
    assert policy(response) == {**SITE_POLICY, "style-src": "'self' 'unsafe-inline'", "worker-src": "'self' blob:"}
    assert "fonts.googleapis.com" not in response.content.decode()


def test_swagger_ui_loads_its_start_up_script_from_this_server(client, db):
    html = client.get("/api/docs/").content.decode()
    assert re.search(r'<script src="/api/docs/\?script=?"', html), html
    assert "<style" not in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in script.content.decode()


def test_the_lockout_page_carries_the_policy(client, members):
    for n in range(5):
        response = client.post("/login/", {"username": "viewer", "password": f"nope-{n}"})
    assert response.status_code == 429 and policy(response) == SITE_POLICY


def test_templates_hold_no_inline_script_style_or_handlers():
    inline = {
        "inline <script>": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
        "<style> element": re.compile(r"<style\b", re.I),
        "style attribute": re.compile(r"\sstyle\s*=", re.I),
        "on* handler": re.compile(r"\son[a-z]+\s*=", re.I),
        "hx-on attribute": re.compile(r"\s(data-)?hx-on", re.I),
        "javascript: URL": re.compile(r"javascript:", re.I),
    }
    comments = re.compile(r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}", re.S)
    found = [f"{path.relative_to(TEMPLATES)}: {what}"
             for path in sorted(TEMPLATES.rglob("*.html")) for what, pattern in inline.items()
             if pattern.search(comments.sub("", path.read_text()))]
    assert found == []
