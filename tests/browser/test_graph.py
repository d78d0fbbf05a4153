"""The promotion graph in a real browser: arrows where the nodes are, a long error that folds
open, and a one-click promote from the graph, under the Content-Security-Policy.

Reconcile doesn't run here: the test writes the status fields as reconcile would.
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from environments import services as promotion_services
from environments.models import Artifact, Binding, Phase, Resource
from tests.browser.test_promotion_flows import sign_in
from tests.fixtures.domain import digest
from tests.fixtures.web import set_status

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REGISTRY_ERROR = ("Will retry after attempt 4: mirror of registry.example.com/shop/api@sha256:… to registry.central:5000 "
                  "failed: 401 Unauthorized: " + "authentication required for repository shop/api; " * 6)


@pytest.fixture
def world(members, environments, make_resource):
    dev, staging, prod = environments["dev"], environments["staging"], environments["prod"]
    upstreams = {}
    for name in ("api", "web", "worker"):
        upstream = make_resource(dev, name, image=f"registry.example.com/shop/{name}:1", ports=[8080])
        for n in (1, 2, 3):
            promotion_services.artifact_publish(resource=upstream, digest=digest(f"{name}-{n}"), tag=f"1.{n}")
        set_status(upstream, digest(f"{name}-3"), applied_seq=3)
        upstreams[name] = upstream
    make_resource(dev, "migrate", image="registry.example.com/shop/migrate:1")  # only in dev, nothing run yet
    staging_web = make_resource(staging, "web", upstream=upstreams["web"])
    set_status(staging_web, digest("web-3"), applied_seq=3)
    staging_api = make_resource(staging, "api", upstream=upstreams["api"], replicas=3)
    set_status(staging_api, digest("api-3"), applied_seq=3, phase=Phase.PROGRESSING)
    Resource.objects.filter(pk=staging_api.pk).update(rollout_ready=1, rollout_total=3, message="rolling out 1/3")
    prod_web = make_resource(prod, "web", upstream=staging_web, binding=Binding.PIN_DIGEST, pinned=digest("web-2"))
    prod_api = make_resource(prod, "api", upstream=staging_api, binding=Binding.PIN_DIGEST, pinned=digest("api-3"))
    Resource.objects.filter(pk=prod_api.pk).update(phase=Phase.FAILED, message=REGISTRY_ERROR, failures_in_a_row=3,
                                                   backoff_until=timezone.now() + timedelta(minutes=5))
    # prod/worker skips staging: pinned straight from dev.
    prod_worker = make_resource(prod, "worker", upstream=upstreams["worker"], binding=Binding.PIN_DIGEST, pinned=digest("worker-3"))
    set_status(prod_worker, digest("worker-3"))
    # What staging publishes (reconcile would record it): prod/web's pin is one behind.
    for resource, digests in ((staging_web, ["web-2", "web-3"]), (staging_api, ["api-3"])):
        Artifact.objects.bulk_create(
            Artifact(resource=resource, sequence=seq, repository=f"registry.example.com/shop/{resource.name}", digest=digest(d),
                     origin=Artifact.Origin.PROMOTION, first_published_at=timezone.now())
            for seq, d in enumerate(digests, start=1))
    set_status(prod_web, digest("web-2"))
    return {"prod_web": prod_web, "prod_api": prod_api}


@pytest.fixture
def refused(page):
    """What the Content-Security-Policy refused, as the browser reported it."""
    found = []
    page.expose_binding("reportViolation", lambda source, event: found.append(event))
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => window.reportViolation("
                         "{directive: e.violatedDirective, sample: e.sample}))")
    return found


ARROW_ENDS = """() => [...document.querySelectorAll('#graph path.edge')].map(p => {
  const svg = p.ownerSVGElement.getBoundingClientRect();
  const end = p.getPointAtLength(p.getTotalLength()), start = p.getPointAtLength(0);
  const box = sel => document.querySelector(`[data-resource="${sel}"]`).getBoundingClientRect();
  const up = box(p.dataset.from), down = box(p.dataset.to);
  return {from: p.dataset.from, to: p.dataset.to,
          start: [svg.x + start.x - up.right, svg.y + start.y - (up.top + up.bottom) / 2],
          end: [svg.x + end.x - down.left, svg.y + end.y - (down.top + down.bottom) / 2]};
})"""


def test_the_graph_draws_arrows_to_the_nodes_and_promotes_with_one_click(page, live_server, world, refused):
    page.on("dialog", lambda dialog: dialog.accept())  # the promote button's confirmation
    sign_in(page, live_server, "maintainer")
    page.get_by_role("link", name="Shop").click()
    page.locator(".tabs").get_by_role("link", name="Graph").click()
    expect(page).to_have_url(re.compile(r"/projects/shop/graph/$"))
    graph = page.locator("#graph")
    expect(graph).to_be_visible()
    page.shots("graph")

    # Arrows: one per promote-from, solid for track latest, dashed and labelled for pins.
    edges = graph.locator("path.edge")
    expect(edges).to_have_count(5)
    expect(graph.locator('path.edge[data-binding="pin"][stroke-dasharray]')).to_have_count(3)
    expect(graph.locator('path.edge[data-binding="track"]:not([stroke-dasharray])')).to_have_count(2)
    expect(graph.locator("text.edge-label")).to_have_text([digest(d)[7:15] for d in ("api-3", "web-2", "worker-3")])
    # Drawn on the server from the same sizes as the stylesheet: every arrow leaves its upstream's
    # right edge and ends at its downstream's left edge, at mid-height.
    for arrow in page.evaluate(ARROW_ENDS):
        assert all(abs(v) <= 3 for v in arrow["start"] + arrow["end"]), arrow

    # Nodes: real links in reading order, each with its digest, its state and how far behind.
    expect(graph.get_by_role("link", name="migrate")).to_have_count(1)  # only in dev
    names = graph.locator(".gname").all_inner_texts()
    assert names == ["api", "migrate", "web", "worker", "api", "web", "api", "web", "worker"]
    staging_api = graph.locator('[data-resource="staging/api"]')
    expect(staging_api).to_contain_text("rolling out 1/3")
    prod_api = graph.locator('[data-resource="prod/api"]')
    expect(prod_api).to_contain_text("Retrying in")
    expect(prod_api).to_contain_text("nothing running yet")
    expect(prod_api).not_to_contain_text("up to date")
    prod_web = graph.locator('[data-resource="prod/web"]')
    expect(prod_web).to_contain_text(digest("web-2")[7:19])
    expect(prod_web).to_contain_text("1 behind")

    # A long registry error folds to its first line; opened, it floats over the graph, wrapped.
    prod_api.locator("summary").click()
    full = prod_api.locator(".status-full")
    expect(full).to_be_visible()
    box = full.bounding_box()
    assert box["width"] < 450 and box["height"] > 40  # wrapped, not one long line
    page.shots("graph-error-open")
    # The live refresh (every 5 s) keeps it open while it says the same.
    with page.expect_response(lambda response: response.url.endswith("/graph/") and response.request.method == "GET",
                              timeout=15_000):
        pass
    page.wait_for_load_state("networkidle")
    expect(prod_api.locator("details")).to_have_attribute("open", "")

    # One click (after confirming) pins prod/web to staging/web's latest; the graph answers.
    prod_web.get_by_role("link", name=re.compile("Promote")).click()
    expect(graph.locator('[data-resource="prod/web"]')).to_contain_text(f"pin {digest('web-3')[7:15]}")
    expect(graph.locator('[data-resource="prod/web"]').get_by_role("link", name=re.compile("Promote"))).to_have_count(0)
    expect(page.locator("#graph .msg-success")).to_contain_text("pinned to")
    page.shots("graph-promoted")
    world["prod_web"].refresh_from_db()
    assert world["prod_web"].pinned_digest == digest("web-3")

    # Reconcile applied it: the live refresh (every 5 s) shows it up to date.
    set_status(world["prod_web"], digest("web-3"))
    expect(graph.locator('[data-resource="prod/web"]')).to_contain_text("up to date", timeout=15_000)
    page.shots("graph-refreshed")

    # The pipeline and the resource's own page say what the graph says of prod/api.
    page.locator(".tabs").get_by_role("link", name="Pipeline").click()
    cell = page.locator('#pipeline [data-resource="prod/api"]')
    expect(cell).to_have_attribute("data-state", "retrying")
    expect(cell).to_contain_text("Retrying in")
    expect(cell).to_contain_text("nothing running yet")
    cell.locator("summary").click()
    expect(cell.locator(".status-full")).to_be_visible()
    # The error wraps (at most 24rem wide), inside the table: nothing runs out of the column.
    full, table = cell.locator(".status-full").bounding_box(), page.locator("#pipeline table").bounding_box()
    assert full["width"] <= 24 * 16 + 1 and full["height"] > 60, full
    assert full["x"] + full["width"] <= table["x"] + table["width"]
    page.shots("pipeline-error-open")
    cell.get_by_role("link", name=re.compile("no image yet")).click()
    expect(page.locator("#resource-live .status-cell")).to_have_attribute("data-state", "retrying")
    expect(page.locator("#resource-live")).to_contain_text("Retrying in")
    page.shots("resource-page")
    assert refused == []
