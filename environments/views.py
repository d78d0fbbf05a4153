"""Pages: an environment, the Create Resource wizard, a resource and its edit form.

Each wizard step is one view answer: the step's partial for HTMX (swapped
inside `#wizard`, which stays in place), the full page otherwise; a plain
post that moves to another step redirects to it (post/redirect/get), so the
whole flow works without JavaScript. Writes go through the services.
"""

from __future__ import annotations

import json
import re
import secrets
import time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST

from projects.selectors import project_access
from projects.views import wants_fragment
from promotions import selectors as promotion_selectors

from . import forms, rules, services
from .models import Environment, Resource


def _environment(access, slug: str) -> Environment:
    environment = get_object_or_404(Environment, project=access.project, slug=slug)
    environment.project = access.project  # no second query for the project
    return environment


def _resource(access, env: str, name: str) -> Resource:
    environment = _environment(access, env)
    resource = get_object_or_404(
        promotion_selectors.with_status(
            Resource.objects.filter(environment=environment).select_related("promote_from__environment")
        ),
        name=name,
    )
    resource.environment = environment
    return resource


def _location(request, url: str) -> HttpResponse:
    """Finish an action: `HX-Location` for HTMX (no full reload), a redirect otherwise."""
    if request.htmx:
        response = HttpResponse()
        response["HX-Location"] = json.dumps({"path": url, "target": "body"})
        return response
    return HttpResponseRedirect(url)


# --- environment ---------------------------------------------------------------------------------


@login_required
def environment_detail(request, project, env):
    access = project_access(request.user, project)
    environment = _environment(access, env)
    context = {
        "project": access.project, "access": access, "environment": environment,
        "resources": promotion_selectors.environment_resources(environment),
        "can_change": access.can_change(environment), "can_pin": access.can_pin(environment),
    }
    if wants_fragment(request, "resources"):
        return render(request, "environments/htmx/environment_detail_resources.html", context)
    return render(request, "environments/environment_detail.html", context)


# --- the Create Resource wizard -------------------------------------------------------------------

WIZARD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,32}$")
WIZARDS_KEPT = 10


class WizardStore:
    """Wizard states in the session, keyed by environment and wizard id (several tabs can run one each)."""

    KEY = "resource_wizards"

    def __init__(self, session, environment: Environment):
        self.session, self.prefix = session, f"{environment.pk}:"

    def load(self, wizard_id: str) -> dict:
        stored = self.session.get(self.KEY, {}).get(self.prefix + wizard_id)
        return dict(stored["state"]) if stored else {}

    def save(self, wizard_id: str, state: dict) -> None:
        wizards = dict(self.session.get(self.KEY, {}))
        wizards[self.prefix + wizard_id] = {"state": state, "at": time.time()}
        # Abandoned wizards don't pile up in the session: keep the newest few.
        for key in sorted(wizards, key=lambda k: wizards[k]["at"])[:-WIZARDS_KEPT]:
            del wizards[key]
        self.session[self.KEY] = wizards

    def delete(self, wizard_id: str) -> None:
        wizards = dict(self.session.get(self.KEY, {}))
        wizards.pop(self.prefix + wizard_id, None)
        self.session[self.KEY] = wizards


def _require_change(access, environment, what="create resources"):
    if not access.can_change(environment):
        role = "maintainer" if environment.protected else "developer"
        raise PermissionDenied(
            f"You need the {role} role in project {access.project.slug} to {what} in "
            f"{'protected ' if environment.protected else ''}environment {environment.slug}."
        )


def _render_step(request, access, environment, wizard, wizard_id, step, errors=None, status=200):
    url = reverse("resource_new", args=[access.project.slug, environment.slug])
    steps = wizard.steps
    context = {
        "project": access.project, "access": access, "environment": environment,
        "wizard_id": wizard_id, "wizard_url": url, "step": step,
        "step_template": f"environments/htmx/resource_new_{step}.html",
        "step_number": steps.index(step) + 1, "step_count": len(steps),
        "steps": [{"name": s, "title": forms.STEP_TITLES[s], "current": s == step, "done": steps.index(s) < steps.index(step)} for s in steps],
        "step_title": forms.STEP_TITLES[step],
        "errors": errors or {}, "is_first": step == steps[0], "is_review": step == "review",
        **wizard.context(step),
    }
    if request.htmx:
        response = render(request, "environments/htmx/resource_new_step.html", context, status=status)
        response["HX-Push-Url"] = f"{url}?{urlencode({'wizard': wizard_id, 'step': step})}"
        return response
    return render(request, "environments/resource_new.html", context, status=status)


def _goto(request, access, environment, wizard, wizard_id, step):
    if request.htmx:
        return _render_step(request, access, environment, wizard, wizard_id, step)
    url = reverse("resource_new", args=[access.project.slug, environment.slug])
    return HttpResponseRedirect(f"{url}?{urlencode({'wizard': wizard_id, 'step': step})}")


@login_required
@require_http_methods(["GET", "POST"])
def resource_new(request, project, env):
    """The Create Resource wizard: `?wizard=<id>&step=<step>` shows a step, a post moves on.

    Posts carry `wizard`, `step` and `action` (next, back, add_env, create)
    plus the step's fields.
    """
    access = project_access(request.user, project)
    environment = _environment(access, env)
    _require_change(access, environment)
    data = request.POST if request.method == "POST" else request.GET
    wizard_id = data.get("wizard", "")
    if not WIZARD_ID_RE.match(wizard_id):
        wizard_id = secrets.token_urlsafe(9)
    store = WizardStore(request.session, environment)
    wizard = forms.ResourceWizard(environment, store.load(wizard_id))
    step = data.get("step", "source")
    if step not in wizard.steps:
        step = "source"

    if request.method == "GET":
        # A step can't be shown before the ones it depends on are filled in.
        invalid = wizard.first_invalid(before=step) if step != "source" else None
        if invalid:
            step = invalid[0]
        return _render_step(request, access, environment, wizard, wizard_id, step)

    action = request.POST.get("action", "next")
    if step != "review":
        wizard.read(step, request.POST)
    if action == "back":
        store.save(wizard_id, wizard.state)  # keep what was typed, checked or not
        return _goto(request, access, environment, wizard, wizard_id, wizard.previous(step))
    if action == "add_env" and step == "config":
        wizard.state["env_blank"] = int(wizard.state.get("env_blank", 2) or 2) + 2
        store.save(wizard_id, wizard.state)
        return _render_step(request, access, environment, wizard, wizard_id, step)
    store.save(wizard_id, wizard.state)
    if action == "create" or step == "review":
        return _create(request, access, environment, wizard, wizard_id, store)
    errors = wizard.validate(step)
    if errors:
        return _render_step(request, access, environment, wizard, wizard_id, step, errors)
    return _goto(request, access, environment, wizard, wizard_id, wizard.next(step))


def _create(request, access, environment, wizard, wizard_id, store):
    invalid = wizard.first_invalid()
    if invalid:
        return _render_step(request, access, environment, wizard, wizard_id, invalid[0], invalid[1])
    try:
        resource = services.resource_create(actor=request.user, **wizard.arguments())
    except ValidationError as exc:
        errors = exc.message_dict
        return _render_step(request, access, environment, wizard, wizard_id, wizard.step_of(errors), errors)
    store.delete(wizard_id)
    messages.success(request, f"Created {environment.name}/{resource.name}. Its first reconcile is queued.")
    return _location(request, reverse("resource_detail", args=[access.project.slug, environment.slug, resource.name]))


@login_required
@require_POST
def digest_check(request, project, env):
    """Checks a digest as it is typed; answers the field's error container."""
    project_access(request.user, project)
    value = request.POST.get("pinned_digest", "").strip()
    errors = []
    if value:
        try:
            rules.check_digest(value)
        except ValidationError as exc:
            errors = exc.message_dict["pinned_digest"]
    return render(request, "environments/htmx/digest_check.html", {"errors": errors, "value": value, "ok": bool(value) and not errors})


# --- a resource ----------------------------------------------------------------------------------

RESOURCE_HISTORY_LIMIT = 50


@login_required
def resource_detail(request, project, env, name):
    access = project_access(request.user, project)
    resource = _resource(access, env, name)
    context = {
        "project": access.project, "access": access, "environment": resource.environment, "resource": resource,
        "promotions": list(promotion_selectors.resource_promotions(resource)[:RESOURCE_HISTORY_LIMIT]),
        "env_vars": list(resource.env_vars.all()),
        "dependants": list(resource.dependants.select_related("environment")),
        "can_change": access.can_change(resource.environment),
        "can_pin": access.can_pin(resource.environment),
        "ports_text": forms.format_ports(resource.ports),
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

    Posts carry `action`: `preview` (answer the changes panel) or `save`.
    """
    access = project_access(request.user, project)
    resource = _resource(access, env, name)
    _require_change(access, resource.environment, "change resources")
    can_pin = access.can_pin(resource.environment)
    context = {
        "project": access.project, "access": access, "environment": resource.environment, "resource": resource,
        "can_pin": can_pin, "errors": {}, "summary": None, "database_url_set": bool(resource.database_url),
        "recent": promotion_selectors.recent_artifacts(resource.promote_from) if resource.promote_from_id else [],
        "edit_url": reverse("resource_edit", args=[access.project.slug, resource.environment.slug, resource.name]),
    }
    if request.method == "GET":
        context["values"] = forms.edit_initial(resource)
        context["env_rows"] = _env_rows(context["values"])
        return render(request, "environments/resource_edit.html", context)

    action = request.POST.get("action", "preview")
    changes, errors = forms.read_edit_post(resource, request.POST, can_pin=can_pin)
    context["values"] = forms.edit_values_from_post(resource, request.POST)
    blanks = 2
    if action == "add_env":  # one more batch of empty rows than were posted
        posted = sum(1 for key in request.POST if forms.ENV_KEY_RE.match(key))
        blanks = posted - len(context["values"]["env"]) + 2
    context["env_rows"] = _env_rows(context["values"], blanks)
    if not errors:
        try:
            plan = services.validate_resource_update(resource=resource, **{**changes, "env": [dict(r) for r in changes["env"]]})
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            context["summary"] = forms.describe_changes(resource, plan)
    context["errors"] = errors

    if action == "save" and not errors:
        try:
            services.resource_update(resource=resource, actor=request.user, **changes)
        except ValidationError as exc:
            context["errors"] = exc.message_dict
        else:
            messages.success(request, f"Saved {resource.environment.name}/{resource.name}.")
            return _location(request, reverse("resource_detail", args=[access.project.slug, resource.environment.slug, resource.name]))

    if wants_fragment(request, "changes"):
        return render(request, "environments/htmx/resource_edit_changes.html", context)
    if wants_fragment(request, "edit-form"):
        return render(request, "environments/htmx/resource_edit_form.html", context)
    return render(request, "environments/resource_edit.html", context)
