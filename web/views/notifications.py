"""The project's Notifications page: its webhooks, each with its delivery log; add, pause, delete, send a test.

Every member sees the page; maintainers change it (the services check again
and audit). The list is one fragment (`#hooks`), rendered alone for HTMX
posts and for its own refresh while a delivery is pending.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from core.http import location, wants_fragment
from projects.models import Role
from projects.permissions import check_access
from projects.selectors import project_access
from promotions import notifications
from promotions.models import ProjectWebhook, WebhookDelivery

from .common import require

LOG_ROWS = 20


def _hooks(project) -> list[ProjectWebhook]:
    recent = WebhookDelivery.objects.order_by("-id")[:LOG_ROWS]
    hooks = list(project.webhooks.order_by("name", "pk").prefetch_related(Prefetch("deliveries", recent, to_attr="recent")))
    for hook in hooks:
        hook.destination = notifications.destination(hook.url)
    return hooks


def _context(access, **extra) -> dict:
    hooks = _hooks(access.project)
    return {
        "project": access.project, "access": access, "hooks": hooks,
        "can_manage": access.at_least(Role.MAINTAINER),
        "pending": any(d.status in WebhookDelivery.PENDING for hook in hooks for d in hook.recent),
        "event_choices": notifications.SUBSCRIBABLE, "formats": ProjectWebhook.Format.choices,
        "values": {"name": "", "url": "", "format": ProjectWebhook.Format.SLACK, "events": [], "active": True},
        "errors": {}, "secret_min": notifications.SECRET_MIN, **extra,
    }


def _list(request, access):
    """After an action: the list alone for HTMX, else back to the page."""
    if wants_fragment(request, "hooks"):
        return render(request, "promotions/htmx/notification_hooks.html", _context(access))
    return location(request, reverse("project_notifications", args=[access.project.slug]))


@login_required
@require_http_methods(["GET", "POST"])
def project_notifications(request, project):
    access = project_access(request.user, project)
    if request.method == "GET":
        context = _context(access)
        if wants_fragment(request, "hooks"):
            return render(request, "promotions/htmx/notification_hooks.html", context)
        return render(request, "promotions/project_notifications.html", context)

    require(request, check_access, access, Role.MAINTAINER, notifications.WHAT, action="webhook.create")
    values = {
        "name": request.POST.get("name", ""), "url": request.POST.get("url", ""),
        "format": request.POST.get("format", ""), "events": request.POST.getlist("events"),
        "active": request.POST.get("active") == "on",
    }
    try:
        hook = notifications.webhook_create(project=access.project, actor=request.user,
                                            secret=request.POST.get("secret", ""), **values)
    except ValidationError as exc:
        # The secret is never shown back, not even after a refusal.
        context = _context(access, values=values, errors=exc.message_dict)
        return render(request, "promotions/project_notifications.html", context)
    messages.success(request, f"Webhook {hook.name} added: send it a test to check it.")
    return location(request, reverse("project_notifications", args=[access.project.slug]))


def _hook(access, pk: int) -> ProjectWebhook:
    hook = get_object_or_404(ProjectWebhook, project=access.project, pk=pk)
    hook.project = access.project
    return hook


@login_required
@require_POST
def webhook_test(request, project, pk):
    access = project_access(request.user, project)
    hook = _hook(access, pk)
    require(request, check_access, access, Role.MAINTAINER, notifications.WHAT, action="webhook.test", target=hook)
    notifications.webhook_test(webhook=hook, actor=request.user)
    if not wants_fragment(request, "hooks"):
        messages.success(request, f"Test notification queued for {hook.name}: its log shows how it went.")
    return _list(request, access)


@login_required
@require_POST
def webhook_toggle(request, project, pk):
    """Pause or resume a webhook."""
    access = project_access(request.user, project)
    hook = _hook(access, pk)
    require(request, check_access, access, Role.MAINTAINER, notifications.WHAT, action="webhook.update", target=hook)
    try:
        notifications.webhook_update(webhook=hook, actor=request.user, active=not hook.active)
    except ValidationError as exc:  # e.g. the rules tightened since it was added
        messages.error(request, " ".join(m for ms in exc.message_dict.values() for m in ms))
    return _list(request, access)


@login_required
@require_POST
def webhook_delete(request, project, pk):
    access = project_access(request.user, project)
    hook = _hook(access, pk)
    require(request, check_access, access, Role.MAINTAINER, notifications.WHAT, action="webhook.delete", target=hook)
    notifications.webhook_delete(webhook=hook, actor=request.user)
    if not wants_fragment(request, "hooks"):
        messages.success(request, f"Webhook {hook.name} deleted.")
    return _list(request, access)
