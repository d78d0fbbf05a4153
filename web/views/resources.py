"""Pages: an environment, a resource, and the resource edit page (with its "what will change" panel)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from core.http import location, wants_fragment
from environments import freeze, keeps, selectors, services
from projects.permissions import check_access_change
from projects.selectors import project_access
from promotions import selectors as promotion_selectors

from .. import edit
from ..parsers import ENV_KEY_RE, format_ports
from . import approvals
from . import freeze as freeze_pages
from .common import environment_of, require, resource_of

# --- environment ---------------------------------------------------------------------------------


@login_required
def environment_detail(request, project, env):
    access = project_access(request.user, project)
    environment = environment_of(access, env)
    context = {
        "project": access.project, "access": access, "environment": environment,
        "resources": selectors.environment_resources(environment),
        "can_change": access.can_change(environment), "can_pin": access.can_pin(environment),
    }
    if wants_fragment(request, "resources"):
        return render(request, "environments/htmx/environment_detail_resources.html", context)
    context.update(freeze_pages.context(request, access, environment))  # its freeze windows, and the form to add one
    return render(request, "environments/environment_detail.html", context)


RESOURCE_HISTORY_LIMIT = 50


@login_required
def resource_detail(request, project, env, name):
    access = project_access(request.user, project)
    resource = resource_of(access, env, name)
    context = {
        "project": access.project, "access": access, "environment": resource.environment, "resource": resource,
        "promotions": list(promotion_selectors.resource_promotions(resource)[:RESOURCE_HISTORY_LIMIT]),
        "env_vars": list(resource.env_vars.all()),
        "dependants": list(resource.dependants.select_related("environment")),
        "can_change": access.can_change(resource.environment),
        "can_pin": access.can_pin(resource.environment),
        "ports_text": format_ports(resource.ports),
        "watch": selectors.tag_watch_of(resource),
        "protection": keeps.protection_of(resource), "keep_healthy": settings.HOIST_KEEP_HEALTHY,
        "change_requests": [approvals.decidable(change, request.user, access)
                            for change in approvals.open_requests([resource]).get(resource.pk, [])],
        "frozen": freeze.current(resource.environment),
    }
    if wants_fragment(request, "resource-live"):
        return render(request, "environments/htmx/resource_detail_live.html", context)
    return render(request, "environments/resource_detail.html", context)


def _env_rows(values, blanks: int = 2) -> list[dict]:
    return values["env"] + [{"name": "", "value": "", "secret": False}] * blanks


@login_required
@require_http_methods(["GET", "POST"])
def resource_edit(request, project, env, name):
    """Edit a resource's config, image, pin or binding; shows what will change before saving.

    Posts carry `action`: `preview` (answer the changes panel), `add_env` or `save`. The
    panel posts a preview as you type (HX-Target `changes`): it answers the panel's content
    and, out of band, each field's error box; nothing is saved.
    """
    access = project_access(request.user, project)
    resource = resource_of(access, env, name)
    require(request, check_access_change, access, resource.environment, "change resources", action="resource.update", target=resource)
    can_pin = access.can_pin(resource.environment)
    frozen = freeze.current(resource.environment)
    context = {
        "project": access.project, "access": access, "environment": resource.environment, "resource": resource,
        "can_pin": can_pin, "errors": {}, "summary": None, "database_url_set": bool(resource.database_url),
        "recent": selectors.recent_artifacts(resource.promote_from) if resource.promote_from_id else [],
        "edit_url": reverse("resource_edit", args=[access.project.slug, resource.environment.slug, resource.name]),
        "frozen": frozen,
        "needs_approval": resource.environment.required_approvals,
        "rollout_track": edit.rollout_track(resource, can_pin=can_pin),
        "focus": "changes",  # where focus goes when the form is swapped in (static/js/hoist.js)
    }
    if request.method == "GET":
        context["values"] = edit.edit_initial(resource)
        context["env_rows"] = _env_rows(context["values"])
        return render(request, "environments/resource_edit.html", context)

    action = request.POST.get("action", "preview")
    changes, errors = edit.read_edit_post(resource, request.POST, can_pin=can_pin)
    context["values"] = edit.edit_values_from_post(resource, request.POST)
    blanks = 2
    if action == "add_env":  # one more batch of empty rows than were posted
        posted = sum(1 for key in request.POST if ENV_KEY_RE.match(key))
        blanks = posted - len(context["values"]["env"]) + 2
        context["focus"], context["focus_row"] = "env", len(context["values"]["env"])  # the first empty row
    context["env_rows"] = _env_rows(context["values"], blanks)
    if not errors and action == "save":
        # The service checks everything again under its locks, and audits a refusal.
        try:
            saved = services.resource_update(resource=resource, actor=request.user,
                                             freeze_override=request.POST.get("freeze_override", ""), **changes)
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            if saved.change_request is not None:
                needed = saved.change_request.required
                messages.success(request, f"Saved {resource.environment.name}/{resource.name}; the change of what runs "
                                          f"waits for {needed} approval{'s' if needed != 1 else ''} by other maintainers.")
            else:
                messages.success(request, f"Saved {resource.environment.name}/{resource.name}.")
            return location(request, reverse("resource_detail", args=[access.project.slug, resource.environment.slug, resource.name]))
    elif not errors:
        try:
            plan = services.validate_resource_update(resource=resource, **{**changes, "env": [dict(r) for r in changes["env"]]})
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            context["summary"] = edit.describe_changes(resource, plan)
    context["errors"] = errors

    if wants_fragment(request, "changes"):
        # The live preview: the panel's content, and each field's errors next to it (out of band).
        context["live"] = True
        context["field_errors"] = [(field, errors.get(field, []))
                                   for field in edit.form_fields(resource, can_pin=can_pin, frozen=bool(frozen))]
        context["digest_check"] = edit.digest_check(context["values"], errors)
        return render(request, "environments/htmx/resource_edit_changes.html", context)
    if wants_fragment(request, "edit-form"):
        return render(request, "environments/htmx/resource_edit_form.html", context)
    return render(request, "environments/resource_edit.html", context)
