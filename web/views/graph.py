"""Page: a project's promotion graph. Environments are columns (in their order), resources
nodes, and every promote-from an arrow: solid for track latest, dashed for a pin (labelled
with the pin's digest).

Laid out on the server, no script: a node's column is its environment's position, its row
its name's place among the project's names (a name is one row across every column, as in
the pipeline), so the HTML columns of fixed-size nodes (hoist.css, "Graph") and the SVG of
arrows drawn behind them agree by arithmetic. The sizes below are the stylesheet's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from core.http import wants_fragment
from projects.selectors import Access, project_access

from .projects import pipeline_context, unchanged

# Must match hoist.css ("Graph"): .graph-column width, .graph-columns gap, .graph-env height,
# .gnode height and margin-bottom. Pixels.
NODE_WIDTH = 216
COLUMN_GAP = 96  # room for a pin's label between two columns
HEAD_HEIGHT = 56
NODE_HEIGHT = 112
ROW_GAP = 16

COLUMN_STEP = NODE_WIDTH + COLUMN_GAP
ROW_STEP = NODE_HEIGHT + ROW_GAP
# An arrow that skips columns along its own row arcs through the gap above the row, not
# through the nodes it passes (a cubic's peak is 3/4 of its control points' lift).
SKIP_LIFT = round((NODE_HEIGHT + ROW_GAP) / 2 / 0.75)


@dataclass
class Edge:
    upstream: str  # "env/name"
    downstream: str
    path: str  # the SVG path's d
    pinned: bool
    behind: bool  # the downstream runs something older than the upstream's latest
    label: str = ""  # a pin's short digest
    label_x: int = 0
    label_y: int = 0


@dataclass
class Column:
    environment: object
    slots: list = field(default_factory=list)  # a Resource or None per row, up to the column's last resource


@dataclass
class Graph:
    columns: list[Column]
    edges: list[Edge]
    width: int
    height: int

    @property
    def pinned_count(self) -> int:
        return sum(1 for edge in self.edges if edge.pinned)


def _centre_y(row: int) -> int:
    return HEAD_HEIGHT + row * ROW_STEP + NODE_HEIGHT // 2


def _edge(resource, up_column: int, up_row: int, column: int, row: int) -> Edge:
    x1, y1 = up_column * COLUMN_STEP + NODE_WIDTH, _centre_y(up_row)
    x2, y2 = column * COLUMN_STEP, _centre_y(row)
    pull = max(COLUMN_GAP // 2, abs(x2 - x1) // 2)
    c1x, c2x = x1 + pull, x2 - pull
    c1y, c2y = y1, y2
    if row == up_row and column - up_column > 1:
        c1y = c2y = y1 - SKIP_LIFT
    upstream = resource.promote_from
    edge = Edge(
        upstream=f"{upstream.environment.slug}/{upstream.name}",
        downstream=f"{resource.environment.slug}/{resource.name}",
        path=f"M{x1},{y1} C{c1x},{c1y} {c2x},{c2y} {x2 - 2},{y2}",
        pinned=resource.binding == "pin_digest",
        behind=bool(getattr(resource, "behind", None)),
    )
    if edge.pinned:
        # At the curve's midpoint (t = 1/2): a little above a line between two columns, on an
        # arc's peak in the gap between two rows (the text is 11 px, the gap 16).
        edge.label = resource.pinned_digest[7:15]
        edge.label_x = round((x1 + 3 * c1x + 3 * c2x + x2) / 8)
        edge.label_y = round((y1 + 3 * c1y + 3 * c2y + y2) / 8) + (4 if c1y != y1 else -5)
    return edge


def layout(pipeline) -> Graph:
    """Nodes and arrows of `selectors.pipeline()`'s result; no query."""
    names = {row.name: index for index, row in enumerate(pipeline.rows)}
    columns = {env.pk: index for index, env in enumerate(pipeline.environments)}
    graph_columns = []
    for index, env in enumerate(pipeline.environments):
        slots = [row.cells[index] for row in pipeline.rows]
        while slots and slots[-1] is None:
            slots.pop()
        graph_columns.append(Column(env, slots))
    edges = []
    for row_index, row in enumerate(pipeline.rows):
        for column_index, resource in enumerate(row.cells):
            if resource is None or not resource.promote_from_id:
                continue
            upstream = resource.promote_from
            if upstream.environment_id not in columns or upstream.name not in names:
                continue  # not in this project (the rules forbid it): no arrow to nowhere
            edges.append(_edge(resource, columns[upstream.environment_id], names[upstream.name], column_index, row_index))
    count = len(pipeline.environments)
    width = max(0, count * COLUMN_STEP - COLUMN_GAP)
    height = HEAD_HEIGHT + len(pipeline.rows) * ROW_STEP
    return Graph(graph_columns, edges, width, height)


def graph_context(access: Access, **extra) -> dict:
    context = pipeline_context(access, cells=False, **extra)
    context["graph"] = layout(context["pipeline"])
    return context


@login_required
def project_graph(request, project):
    access = project_access(request.user, project)
    if (response := unchanged(request, access, "graph")) is not None:
        return response
    context = graph_context(access)
    if wants_fragment(request, "graph"):
        return render(request, "projects/htmx/project_graph.html", context)
    return render(request, "projects/project_graph.html", context)
