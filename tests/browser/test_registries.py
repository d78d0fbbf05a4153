"""Tag watching in the browser: a registry with no webhooks, a push found by the watch, what staff
and a project member see (the Registries page from the top bar, the resource page)."""

import re

import pytest
from playwright.sync_api import expect

from environments.models import Artifact, TagWatch
from sandbox.registry_proxy import RegistryProxy
from tests.browser.test_promotion_flows import sign_in
from tests.fixtures.registry import make_image

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def proxy(registry_server):
    front = RegistryProxy(registry_server.url).start()
    yield front
    front.stop()


def test_staff_see_a_push_found_by_the_tag_watch(page, live_server, members, admin_user, environments, make_resource,
                                                 registry, proxy):
    from promotions import watching

    registry.push(make_image(seed=1), tag="main")
    web = make_resource(environments["dev"], "web", image=f"{proxy.host}/{registry.repo()}:main")
    TagWatch.objects.update(next_check_at=TagWatch.objects.get().created_at)
    watching.check_due()  # the watcher's first look
    pushed = registry.push(make_image(seed=2), tag="main")  # no webhook: only the watch can know
    TagWatch.objects.update(next_check_at=TagWatch.objects.get().created_at)
    watching.check_due()
    assert Artifact.objects.filter(resource=web, digest=pushed, origin="watch").exists()

    sign_in(page, live_server, "root")
    page.get_by_role("link", name="Registries").click()
    expect(page.get_by_role("heading", name="Registries")).to_be_visible()
    row = page.locator("table.registries tbody tr").filter(has_text=proxy.host)
    expect(row).to_have_count(1)
    expect(row.locator("td").first).to_have_text("1")  # one watched tag
    page.shots("registries")

    page.goto(f"{live_server.url}/projects/{web.environment.project.slug}/envs/dev/resources/web/")
    watch = page.locator("#tag-watch")
    expect(watch).to_contain_text("Watched every 30 s")
    expect(watch).to_contain_text(re.compile(r"last change \d{4}-\d\d-\d\d"))
    page.shots("resource-watch")


def test_members_who_are_not_staff_have_no_registries_link(page, live_server, members, environments):
    sign_in(page, live_server, "maintainer")
    expect(page.get_by_role("link", name="Registries")).to_have_count(0)
