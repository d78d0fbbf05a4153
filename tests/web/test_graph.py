"""A project's promotion graph: environments as columns, resources as nodes, an arrow per promote-from."""

import re

import pytest

from environments.models import Phase, Resource
from tests.fixtures.domain import digest
from tests.fixtures.web import htmx, set_status
from tests.web.test_project_pages import PIPELINE_QUERIES, build_pipeline
from web.views import graph

GRAPH = "/projects/shop/graph/"


def node(html: str, resource: str) -> str:
    start = html.index(f'data-resource="{resource}"')
    return html[start:html.index("</li>", start)]


def arrows(html: str) -> dict:
    """{(from, to): the <path …> tag} of every arrow."""
    found = {}
    for tag in re.findall(r"<path class=\"edge[^>]*>", html):
        found[(re.search(r'data-from="([^"]+)"', tag)[1], re.search(r'data-to="([^"]+)"', tag)[1])] = tag
    return found


def test_it_draws_environments_in_order_and_a_node_per_resource(viewer_client, pipeline_world):
    response = viewer_client.get(GRAPH)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<a href="/projects/shop/graph/" aria-current="page">Graph</a>' in html
    assert html.index(">dev</a>") < html.index(">staging</a>") < html.index(">prod</a>")
    for env in ("dev", "staging", "prod"):
        assert f'<a class="gname" href="/projects/shop/envs/{env}/resources/web/">web</a>' in node(html, f"{env}/web")
    assert 'hx-get="/projects/shop/graph/" hx-trigger="every 5s"' in html


def test_an_arrow_per_promote_from_solid_for_track_dashed_and_labelled_for_a_pin(viewer_client, pipeline_world):
    html = viewer_client.get(GRAPH).content.decode()
    found = arrows(html)
    assert set(found) == {("dev/web", "staging/web"), ("dev/web", "prod/web")}
    track, pin = found[("dev/web", "staging/web")], found[("dev/web", "prod/web")]
    assert 'data-binding="track"' in track and "stroke-dasharray" not in track
    assert 'data-binding="pin"' in pin and 'stroke-dasharray="6 4"' in pin
    assert f">{digest(1)[7:15]}</text>" in html  # the pin's short digest labels its arrow
    # Accessible: the arrows are an image with a title and a description; the nodes are links.
    assert 'role="img" aria-labelledby="graph-title graph-desc"' in html
    assert "2 resources promote from an upstream, 1 pinned" in html


def test_nodes_show_the_running_digest_state_and_how_far_behind(viewer_client, pipeline_world):
    Resource.objects.filter(pk=pipeline_world["staging_web"].pk).update(phase=Phase.PROGRESSING, rollout_ready=1, rollout_total=2)
    html = viewer_client.get(GRAPH).content.decode()
    staging, prod = node(html, "staging/web"), node(html, "prod/web")
    assert digest(2)[7:19] in staging and "rolling out 1/2" in staging and "1 behind" in staging
    assert digest(1)[7:19] in prod and "Healthy" in prod and "2 behind" in prod
    assert "from dev" in prod and f"pinned to {digest(1)[7:15]}" in prod  # the arrow, in words
    # Both downstreams run something older than dev's latest: their arrows say so too.
    assert all("edge behind" in tag for tag in arrows(html).values())


def test_an_up_to_date_downstream_has_a_plain_arrow(viewer_client, pipeline_world):
    set_status(pipeline_world["staging_web"], digest(3), applied_seq=3)
    found = arrows(viewer_client.get(GRAPH).content.decode())
    assert "behind" not in found[("dev/web", "staging/web")] and "behind" in found[("dev/web", "prod/web")]


@pytest.mark.parametrize("role, sees", [("maintainer", True), ("developer", False), ("viewer", False)])
def test_the_promote_button_is_for_maintainers_on_pins_with_a_newer_upstream(client_as, pipeline_world, role, sees):
    html = client_as(role).get(GRAPH).content.decode()
    prod = node(html, "prod/web")
    assert ("/projects/shop/envs/prod/resources/web/promote/" in prod) is sees
    assert "/promote/" not in node(html, "staging/web")  # track latest: nothing to promote
    if sees:
        assert 'hx-target="#graph"' in prod and f"Promote {digest(3)[7:15]}" in prod and "hx-confirm" in prod
        assert "promote/?next=/projects/shop/graph/" in prod  # without JavaScript: confirm, then back here


def test_no_promote_button_once_the_pin_is_the_upstreams_latest(maintainer_client, pipeline_world):
    Resource.objects.filter(pk=pipeline_world["prod_web"].pk).update(pinned_digest=digest(3))
    assert "/promote/" not in maintainer_client.get(GRAPH).content.decode()


def test_promoting_from_the_graph_answers_with_the_refreshed_graph(maintainer_client, pipeline_world):
    response = maintainer_client.post("/projects/shop/envs/prod/resources/web/promote/", **htmx("graph"))
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body and 'id="graph"' in body and 'id="pipeline"' not in body
    assert f"pin {digest(3)[7:15]}" in node(body, "prod/web") and "pinned to" in body
    prod_web = pipeline_world["prod_web"]
    prod_web.refresh_from_db()
    assert prod_web.pinned_digest == digest(3)


def test_a_resource_in_only_some_environments_appears_only_there(viewer_client, pipeline_world, staging, make_resource):
    make_resource(staging, "worker")
    html = viewer_client.get(GRAPH).content.decode()
    assert 'data-resource="staging/worker"' in html
    assert 'data-resource="dev/worker"' not in html and 'data-resource="prod/worker"' not in html
    columns = html.split('<li class="graph-column">')[1:]
    assert [c.count('class="gnode') for c in columns] == [1, 2, 1]
    assert [c.count('class="gslot"') for c in columns] == [0, 0, 0]  # no trailing placeholders


def test_the_fragment_refreshes_alone(viewer_client, pipeline_world):
    html = viewer_client.get(GRAPH, **htmx("graph")).content.decode()
    assert "<html" not in html and 'id="graph"' in html and "graph-legend" not in html


@pytest.mark.parametrize("url", [GRAPH, "/projects/nope/graph/"])
def test_a_non_member_gets_404(outsider_client, pipeline_world, url):
    assert outsider_client.get(url).status_code == 404


def test_an_empty_project_says_so(viewer_client, project, members):
    assert "no environments yet" in viewer_client.get(GRAPH).content.decode()


@pytest.mark.parametrize("total", [5, 200])
def test_graph_queries_do_not_grow_with_resources(maintainer_client, environments, members, total,
                                                  django_assert_max_num_queries):
    downstreams = build_pipeline(environments, total)
    with django_assert_max_num_queries(PIPELINE_QUERIES):
        response = maintainer_client.get(GRAPH)
    html = response.content.decode()
    assert html.count('class="gnode') == total and len(arrows(html)) == downstreams
    with django_assert_max_num_queries(PIPELINE_QUERIES):
        maintainer_client.get(GRAPH, **htmx("graph"))


def test_the_layout_puts_columns_by_environment_and_rows_by_name(pipeline_world, project):
    from environments import selectors

    laid = graph.layout(selectors.pipeline(project))
    edges = {(e.upstream, e.downstream): e for e in laid.edges}
    centre = graph.HEAD_HEIGHT + graph.NODE_HEIGHT // 2
    # dev → staging: from dev's right edge to staging's left edge, one row (web's) for all.
    assert edges[("dev/web", "staging/web")].path.startswith(f"M{graph.NODE_WIDTH},{centre} ")
    assert edges[("dev/web", "staging/web")].path.endswith(f" {graph.COLUMN_STEP - 2},{centre}")
    # dev → prod skips staging: it arcs through the gap above the row, not through staging/web.
    skip = edges[("dev/web", "prod/web")]
    assert f",{centre - graph.SKIP_LIFT} " in skip.path and skip.path.endswith(f" {2 * graph.COLUMN_STEP - 2},{centre}")
    assert skip.label == digest(1)[7:15] and skip.label_y < centre - graph.NODE_HEIGHT // 2
    assert (laid.width, laid.height) == (3 * graph.COLUMN_STEP - graph.COLUMN_GAP, graph.HEAD_HEIGHT + graph.ROW_STEP)
