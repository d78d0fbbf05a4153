"""The Create Resource wizard's pages.

Each step is one view answer: the step's partial for HTMX (swapped inside
`#wizard`, which stays in place), the full page otherwise; a plain post that
moves to another step redirects to it (post/redirect/get), so the whole flow
works without JavaScript. The state machine is `web.wizard`; the write is
`environments.services.resource_create`.
"""

from __future__ import annotations

import re
import secrets

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST

from core.http import location
from environments import rules, services
from projects import audit
from projects.permissions import check_access_change
from projects.selectors import project_access

from ..wizard import STEP_TITLES, ResourceWizard, WizardStore
from .common import environment_of, require

WIZARD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,32}$")


def _render_step(request, access, environment, wizard, wizard_id, step, errors=None, status=200, focus_row=None):
    """A step: the full page, or for HTMX the partial swapped inside `#wizard` (with a <title>
    htmx puts on the tab). Focus then moves to the step's heading, or to `focus_row`, the
    first empty env row after "Add variables" (static/js/hoist.js)."""
    url = reverse("resource_new", args=[access.project.slug, environment.slug])
    steps = wizard.steps
    context = {
        "project": access.project, "access": access, "environment": environment,
        "wizard_id": wizard_id, "wizard_url": url, "step": step,
        "step_template": f"environments/htmx/resource_new_{step}.html",
        "step_number": steps.index(step) + 1, "step_count": len(steps),
        "steps": [{"name": s, "title": STEP_TITLES[s], "current": s == step, "done": steps.index(s) < steps.index(step)} for s in steps],
        "step_title": STEP_TITLES[step],
        "step_heading": f"Step {steps.index(step) + 1} of {len(steps)}: {STEP_TITLES[step]}",
        "fragment": _swaps_step(request), "focus_row": focus_row,
        "errors": errors or {}, "is_first": step == steps[0], "is_review": step == "review",
        **wizard.context(step),
    }
    if _swaps_step(request):
        response = render(request, "environments/htmx/resource_new_step.html", context, status=status)
        response["HX-Push-Url"] = f"{url}?{urlencode({'wizard': wizard_id, 'step': step})}"
        return response
    return render(request, "environments/resource_new.html", context, status=status)


def _swaps_step(request) -> bool:
    """An HTMX request for a step, answered with the partial; a history restore (the Back
    button after the cache forgot the page) gets the full page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def _goto(request, access, environment, wizard, wizard_id, step):
    if _swaps_step(request):
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
    environment = environment_of(access, env)
    require(request, check_access_change, access, environment, "create resources", action="resource.create", target=environment)
    data = request.POST if request.method == "POST" else request.GET
    wizard_id = data.get("wizard", "")
    if not WIZARD_ID_RE.match(wizard_id):
        wizard_id = secrets.token_urlsafe(9)
    store = WizardStore(request.session, environment)
    wizard = ResourceWizard(environment, store.load(wizard_id))
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
        return _render_step(request, access, environment, wizard, wizard_id, step,
                            focus_row=len(wizard.state.get("env", [])))
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
        # The steps check with the services' own rules; a create they stop is a refused write.
        audit.refused("resource.create", ValidationError(invalid[1]), actor=request.user, project=access.project,
                      target=environment)
        return _render_step(request, access, environment, wizard, wizard_id, invalid[0], invalid[1])
    try:
        resource = services.resource_create(actor=request.user, **wizard.arguments())
    except ValidationError as exc:
        errors = exc.message_dict
        return _render_step(request, access, environment, wizard, wizard_id, wizard.step_of(errors), errors)
    except PermissionDenied as exc:
        # The role allows the wizard but not this choice (a pin is the maintainer's): say so at the binding.
        errors = {"binding": [str(exc)]}
        return _render_step(request, access, environment, wizard, wizard_id, wizard.step_of(errors), errors, status=403)
    store.delete(wizard_id)
    messages.success(request, f"Created {environment.name}/{resource.name}. Its first reconcile is queued.")
    return location(request, reverse("resource_detail", args=[access.project.slug, environment.slug, resource.name]))


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


