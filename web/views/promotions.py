"""Pages: a project's promotion history (and its CSV), and the one-click promote."""

from __future__ import annotations

import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from core.http import wants_fragment
from environments import freeze, selectors, services
from environments.models import Resource, SourceType
from projects.permissions import check_access_pin
from projects.selectors import project_access
from promotions import history
from promotions import selectors as promotion_selectors

from .common import require
from .graph import graph_context
from .projects import pipeline_context

HISTORY_PAGE_SIZE = 50


def _history(access, params) -> history.PromotionFilter:
    return history.PromotionFilter(params, queryset=promotion_selectors.project_promotions(access.project),
                                   project=access.project)


@login_required
def project_promotions(request, project):
    """The history, filtered (a GET form) and paged on the server; the filters ride along in
    the page links, the live refresh and the CSV link. With HTMX the form swaps only `#history`
    (its field errors come along out of band)."""
    access = project_access(request.user, project)
    filters = _history(access, history.page_data(request.GET))
    page = Paginator(filters.qs, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"project": access.project, "access": access, "page": page, "promotions": page.object_list,
               "form": filters.form, "query": filters.query(), "page_filters": history.PAGE_FILTERS}
    if wants_fragment(request, "history"):
        return render(request, "promotions/htmx/project_promotions_table.html", {**context, "fragment": True})
    return render(request, "promotions/project_promotions.html", {**context, **history.filter_choices(access.project)})


class _Echo:
    """csv.writer writes a row to this and gets the line back, to stream it."""

    def write(self, value: str) -> str:
        return value


@login_required
def project_promotions_csv(request, project):
    """The filtered history as CSV, every page of it, streamed (who may read the page may read this)."""
    access = project_access(request.user, project)
    filters = _history(access, request.GET)
    if not filters.is_valid():
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in filters.errors.items())
        return HttpResponse(f"Bad filters: {problems}\n", status=400, content_type="text/plain; charset=utf-8")
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse((writer.writerow(row) for row in history.csv_rows(filters.qs)),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{access.project.slug}-promotions.csv"'
    return response


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

    GET asks for confirmation (the no-JavaScript path); the pipeline's and the
    graph's buttons post directly after `hx-confirm`. Answers their HTMX posts
    with the refreshed pipeline or graph, anything else with a redirect.
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
    if wants_fragment(request, "graph"):  # the graph's button: the refreshed graph
        return render(request, "projects/htmx/project_graph.html", graph_context(access, promote_error=error))
    if error:
        messages.error(request, error)
    target = next_url or resource_url
    if request.htmx:
        response = HttpResponse()
        response["HX-Location"] = target
        return response
    return redirect(target)
