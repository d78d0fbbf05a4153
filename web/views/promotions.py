"""Pages: a project's promotion history, and the one-click promote."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from core.http import wants_fragment
from environments import freeze, selectors, services
from environments.models import Resource, SourceType
from projects.permissions import check_access_pin
from projects.selectors import project_access
from promotions import selectors as promotion_selectors

from .common import require
from .projects import pipeline_context

HISTORY_PAGE_SIZE = 50


@login_required
def project_promotions(request, project):
    access = project_access(request.user, project)
    page = Paginator(promotion_selectors.project_promotions(access.project), HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"project": access.project, "access": access, "page": page, "promotions": page.object_list}
    if wants_fragment(request, "history"):
        return render(request, "promotions/htmx/project_promotions_table.html", context)
    return render(request, "promotions/project_promotions.html", context)


def _resource(access, env, name) -> Resource:
    resource = get_object_or_404(
        Resource.objects.select_related("environment", "promote_from__environment"),
        environment__project=access.project, environment__slug=env, name=name,
    )
    resource.environment.project = access.project
    return resource


@login_required
@require_http_methods(["GET", "POST"])
def resource_promote(request, project, env, name):
    """Pin a promoted resource to its upstream's current digest.

    GET asks for confirmation (the no-JavaScript path); the pipeline's button
    posts directly after `hx-confirm`. Answers the pipeline's HTMX post with
    the refreshed pipeline, anything else with a redirect.
    """
    access = project_access(request.user, project)
    resource = _resource(access, env, name)
    if resource.source_type != SourceType.PROMOTE:
        raise PermissionDenied("Only promoted resources can be promoted from an upstream.")
    require(request, check_access_pin, access, resource.environment, "promote", action="resource.promote", target=resource)
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        next_url = ""
    resource_url = reverse("resource_detail", args=[access.project.slug, resource.environment.slug, resource.name])
    upstream_latest = selectors.latest_artifact(resource.promote_from)

    if request.method == "GET":
        return render(request, "promotions/resource_promote.html", {
            "project": access.project, "access": access, "resource": resource,
            "upstream_latest": upstream_latest, "next": next_url or resource_url,
            "frozen": freeze.current(resource.environment), "needs_approval": resource.environment.required_approvals,
        })

    error = ""
    try:
        promoted = services.resource_promote_upstream_current(resource=resource, actor=request.user,
                                                              freeze_override=request.POST.get("freeze_override", ""))
    except ValidationError as exc:
        error = " ".join(m for messages_ in exc.message_dict.values() for m in messages_)
    else:
        if promoted.change_request is not None:
            needed = promoted.change_request.required
            messages.success(request, f"Promotion of {resource.environment.name}/{resource.name} to "
                                      f"{promoted.change_request.to_digest[:19]}… awaits {needed} approval"
                                      f"{'s' if needed != 1 else ''} by other maintainers.")
        else:
            messages.success(request, f"{resource.environment.name}/{resource.name} pinned to {upstream_latest.digest[:19]}… — promotion queued.")

    if wants_fragment(request, "pipeline"):
        return render(request, "projects/htmx/project_detail_pipeline.html", pipeline_context(access, promote_error=error))
    if error:
        messages.error(request, error)
    target = next_url or resource_url
    if request.htmx:
        response = HttpResponse()
        response["HX-Location"] = target
        return response
    return redirect(target)
