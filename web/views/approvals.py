"""Pages: deciding on change requests (approve, reject, cancel) and a project's approvals list."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core.errors import refusal_text
from environments import services
from environments.models import ChangeRequest
from projects.models import Role
from projects.selectors import project_access

DECISIONS = {
    "approve": lambda change, user, post: services.change_request_approve(
        request=change, actor=user, reason=post.get("reason", ""), freeze_override=post.get("freeze_override", "")),
    "reject": lambda change, user, post: services.change_request_reject(request=change, actor=user, reason=post.get("reason", "")),
    "cancel": lambda change, user, post: services.change_request_cancel(request=change, actor=user),
}
DONE = {"approve": "Approved", "reject": "Rejected", "cancel": "Cancelled"}


def open_requests(resources) -> dict[int, list[ChangeRequest]]:
    """Open change requests by resource id, with their decisions (two queries)."""
    found: dict[int, list[ChangeRequest]] = {}
    for change in (ChangeRequest.objects.filter(resource__in=list(resources), status__in=ChangeRequest.OPEN)
                   .select_related("requested_by").prefetch_related("decisions__user").order_by("-requested_at")):
        found.setdefault(change.resource_id, []).append(change)
    return found


def decidable(change: ChangeRequest, user, access) -> dict:
    """What the page offers `user` on `change`."""
    decided = any(d.user_id == user.pk for d in change.decisions.all())
    mine = change.requested_by_id == user.pk
    maintainer = access.role == Role.MAINTAINER
    awaiting = change.status == ChangeRequest.Status.AWAITING
    return {
        "request": change,
        "approvals": sum(1 for d in change.decisions.all() if d.approved),
        "can_decide": awaiting and maintainer and not mine and not decided,
        "can_cancel": awaiting and (mine or maintainer),
        "why_not": ("you asked for it: another maintainer decides" if mine else
                    "you decided already" if decided else "" if maintainer else "maintainers decide"),
    }


@login_required
@require_POST
def decide(request, project, pk, decision):
    if decision not in DECISIONS:
        raise Http404("No such decision.")
    access = project_access(request.user, project)
    change = get_object_or_404(ChangeRequest.objects.select_related("resource__environment"),
                               pk=pk, resource__environment__project=access.project)
    resource = change.resource
    back = request.POST.get("next") or reverse("resource_detail", args=[project, resource.environment.slug, resource.name])
    if not back.startswith("/"):
        back = reverse("resource_detail", args=[project, resource.environment.slug, resource.name])
    try:
        outcome = DECISIONS[decision](change, request.user, request.POST)
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, refusal_text(exc))
    else:
        note = ""
        if outcome.status == ChangeRequest.Status.APPLIED:
            note = ": the change is applied"
        elif outcome.status == ChangeRequest.Status.APPROVED:
            note = ": it runs when the freeze ends" if outcome.kind != ChangeRequest.Kind.AUTOMATIC else ": applying"
        messages.success(request, f"{DONE[decision]} the change to {resource.environment.name}/{resource.name}{note}.")
    return redirect(back)


@login_required
@require_GET
def project_approvals(request, project):
    access = project_access(request.user, project)
    changes = (ChangeRequest.objects.filter(resource__environment__project=access.project)
               .select_related("resource__environment", "requested_by").prefetch_related("decisions__user")
               .order_by("-requested_at", "-id"))
    awaiting = [decidable(c, request.user, access) for c in changes if c.status in ChangeRequest.OPEN]
    recent = [c for c in changes[:100] if c.status not in ChangeRequest.OPEN][:30]
    return render(request, "approvals/project_approvals.html",
                  {"project": access.project, "access": access, "awaiting": awaiting, "recent": recent})
