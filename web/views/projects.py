"""Pages: your projects, and a project's pipeline."""

from __future__ import annotations

import hashlib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse

from core.http import wants_fragment
from environments import freeze, selectors
from projects.selectors import Access, project_access, projects_for_user

from ..pipeline_cells import cell_html

# The live refresh sends back the version it shows; the same version answers 204 (htmx swaps nothing).
VERSION_HEADER = "X-Hoist-Version"


@login_required
def project_list(request):
    return render(request, "projects/project_list.html", {"projects": projects_for_user(request.user)})


def _freeze_key(freezes: dict) -> str:
    return repr(sorted((pk, f.since, f.until, tuple(f.names)) for pk, f in freezes.items()))


def live_version(access: Access, pipeline: selectors.Pipeline | None = None, freezes: dict | None = None) -> str:
    """What the pipeline and the graph show, as one value: the project's data
    (`selectors.pipeline_version`), the freezes in force now (windows begin and end by the
    clock alone) and who is asking (their role decides the buttons)."""
    environments = pipeline.environments if pipeline is not None else list(access.project.environments.all())
    if freezes is None:
        freezes = freeze.for_environments(environments)
    parts = (selectors.pipeline_version(access.project, environments), _freeze_key(freezes), access.role)
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=12).hexdigest()


def unchanged(request, access: Access, target: str) -> HttpResponse | None:
    """A 204 for a live refresh of `#target` whose version is still current (no rendering:
    a few small queries instead of a thousand cells); None when the page must be rendered."""
    if not wants_fragment(request, target) or not request.headers.get(VERSION_HEADER):
        return None
    if len(messages.get_messages(request)):
        return None  # a message waits to be shown with the next render (not consumed here)
    if request.headers[VERSION_HEADER] != live_version(access):
        return None
    response = HttpResponse(status=204)
    response["Cache-Control"] = "no-store"
    return response


def pipeline_context(access: Access, *, cells: bool = True, **extra) -> dict:
    """The pipeline's data for the page, its live refresh and the one-click promote's answer;
    `cells`: write each cell's markup (`web.pipeline_cells`; the graph draws its own)."""
    pipeline = selectors.pipeline(access.project)
    freezes = freeze.for_environments(pipeline.environments)  # one query for every column
    for env in pipeline.environments:
        env.frozen = freezes.get(env.pk)  # the column header's badge and thaw time
        # Flags on the column's Environment object: every cell of the column shares it.
        env.can_change = access.can_change(env)
        env.can_pin = access.can_pin(env)
        # One reverse() per column, not several per cell (a 20 × 50 pipeline has 1000 cells).
        env.url = reverse("environment_detail", args=[access.project.slug, env.slug])
    page = reverse("project_detail", args=[access.project.slug])  # where a promote's no-JavaScript path returns
    for row in pipeline.rows:
        for cell in row.cells:
            if cell is not None:
                cell.url = f"{cell.environment.url}resources/{cell.name}/"
                if cells:
                    cell.html = cell_html(cell, cell.environment, page)
    return {"project": access.project, "access": access, "pipeline": pipeline,
            "live_version": live_version(access, pipeline, freezes), **extra}


@login_required
def project_detail(request, project):
    access = project_access(request.user, project)
    if (response := unchanged(request, access, "pipeline")) is not None:
        return response
    context = pipeline_context(access)
    if wants_fragment(request, "pipeline"):
        return render(request, "projects/htmx/project_detail_pipeline.html", context)
    return render(request, "projects/project_detail.html", context)
