"""Pages: your projects, and a project's pipeline."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import reverse

from promotions import selectors as promotion_selectors

from .selectors import Access, project_access, projects_for_user


def wants_fragment(request, target_id: str) -> bool:
    """An HTMX request that swaps the element `#target_id` alone (a live refresh or a partial action).

    Other HTMX requests (an `HX-Location` to a page, a history restore) get
    the full page.
    """
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request and htmx.target == target_id


@login_required
def project_list(request):
    return render(request, "projects/project_list.html", {"projects": projects_for_user(request.user)})


def pipeline_context(access: Access, **extra) -> dict:
    pipeline = promotion_selectors.pipeline(access.project)
    for env in pipeline.environments:
        # Flags on the column's Environment object: every cell of the column shares it.
        env.can_change = access.can_change(env)
        env.can_pin = access.can_pin(env)
        # One reverse() per column, not several per cell (a 20 × 50 pipeline has 1000 cells).
        env.url = reverse("environment_detail", args=[access.project.slug, env.slug])
    for row in pipeline.rows:
        for cell in row.cells:
            if cell is not None:
                cell.url = f"{cell.environment.url}resources/{cell.name}/"
    return {"project": access.project, "access": access, "pipeline": pipeline, **extra}


@login_required
def project_detail(request, project):
    access = project_access(request.user, project)
    context = pipeline_context(access)
    if wants_fragment(request, "pipeline"):
        return render(request, "projects/htmx/project_detail_pipeline.html", context)
    return render(request, "projects/project_detail.html", context)
