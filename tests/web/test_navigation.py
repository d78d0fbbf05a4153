"""The top bar: Projects, Tokens and the API docs for everyone signed in; Registries and Admin for
staff; the section a page is in marked with aria-current. Breadcrumbs sit under it."""

import re

import pytest
from django.urls import reverse


def main_nav(body: str) -> str:
    match = re.search(r'<nav class="sections" aria-label="Main">(.*?)</nav>', body, re.S)
    assert match, "no main navigation"
    return match.group(1)


def links(nav: str) -> dict[str, str]:
    """{label: the <a …> tag}."""
    return {label: tag for tag, label in re.findall(r'(<a [^>]*>)([^<]+)</a>', nav)}


def test_it_reaches_projects_tokens_and_the_api_docs(developer_client, project):
    nav = links(main_nav(developer_client.get("/").content.decode()))
    assert list(nav) == ["Projects", "Tokens", "API docs"]
    assert f'href="{reverse("token_list")}"' in nav["Tokens"]
    assert f'href="{reverse("api-redoc")}"' in nav["API docs"]


def test_staff_also_reach_registries_and_the_admin(client, make_user, db):
    client.force_login(make_user("root", is_staff=True))
    nav = links(main_nav(client.get("/tokens/").content.decode()))
    assert list(nav) == ["Projects", "Tokens", "API docs", "Registries", "Admin"]
    assert 'href="/admin/"' in nav["Admin"] and 'href="/registries/"' in nav["Registries"]


@pytest.mark.parametrize(("url", "section", "current"), [
    ("/", "Projects", "page"),
    ("/projects/shop/", "Projects", "true"),
    ("/projects/shop/envs/staging/resources/web/edit/", "Projects", "true"),
    ("/tokens/", "Tokens", "page"),
])
def test_the_current_section_is_marked(maintainer_client, pipeline_world, url, section, current):
    nav = links(main_nav(maintainer_client.get(url).content.decode()))
    marked = {label: tag for label, tag in nav.items() if "aria-current" in tag}
    assert list(marked) == [section] and f'aria-current="{current}"' in marked[section]


def test_signed_out_pages_have_no_navigation(client, db):
    body = client.get("/login/").content.decode()
    assert 'aria-label="Main"' not in body and 'aria-label="Breadcrumbs"' not in body


def test_breadcrumbs_sit_under_the_top_bar_empty_where_a_page_has_none(maintainer_client, pipeline_world):
    body = maintainer_client.get("/projects/shop/envs/staging/").content.decode()
    header_end = body.index("</header>")
    crumbs = body.index('<nav class="crumbs" aria-label="Breadcrumbs">')
    assert header_end < crumbs < body.index('<main id="main">')
    assert '<nav class="crumbs" aria-label="Breadcrumbs"></nav>' in maintainer_client.get("/tokens/").content.decode()
