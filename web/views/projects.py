"""Pages: your projects, and a project's pipeline."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import reverse

from core.http import wants_fragment
from environments import freeze, selectors
from projects.selectors import Access, project_access, projects_for_user


@login_required
def project_list(request):
    return render(request, "projects/project_list.html", {"projects": projects_for_user(request.user)})


def pipeline_context(access: Access, **extra) -> dict:
    pipeline = selectors.pipeline(access.project)
    freezes = freeze.for_environments(pipeline.environments)  # one query for every column
    for env in pipeline.environments:
        env.frozen = freezes.get(env.pk)  # the column header's badge and thaw time
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
