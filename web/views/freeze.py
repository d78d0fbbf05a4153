"""The environment page's freeze windows: the list, "frozen until …", and for maintainers a
form to add a window and buttons to delete one. Every write is `environments.freeze`'s."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_POST

from environments import freeze
from environments.models import FreezeWindow
from projects.models import Role
from projects.permissions import check_access
from projects.selectors import project_access

from .common import environment_of, require

# Offered first in the time zone list (any IANA name may be typed).
COMMON_ZONES = ("UTC", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo")
BLANK = {"name": "", "kind": FreezeWindow.Kind.ONCE, "starts_at": "", "ends_at": "", "weekdays": [],
         "start_time": "", "end_time": "", "timezone": "UTC"}


def context(request, access, environment) -> dict:
    """What the environment page shows of its freeze windows (one query); after a refused add,
    the form as it was posted with each error next to its field."""
    windows = list(environment.freeze_windows.select_related("created_by"))
    posted = getattr(request, "freeze_form", None) or {}
    return {
        "freeze_windows": [{"window": window, "summary": freeze.summary(window)} for window in windows],
        "frozen": freeze.freeze_of(windows),
        "can_freeze": access.at_least(Role.MAINTAINER),
        "freeze_values": posted.get("values", BLANK),
        # Django templates can't read "__all__": errors of the whole form show as "form".
        "freeze_errors": {("form" if field == NON_FIELD_ERRORS else field): messages_
                          for field, messages_ in posted.get("errors", {}).items()},
        "weekday_choices": [(str(day), name) for day, name in enumerate(freeze.WEEKDAYS)],
        "zone_choices": [*COMMON_ZONES, *sorted(freeze.time_zones() - set(COMMON_ZONES))],
    }


def _read(post) -> tuple[dict, dict, dict]:
    """The form's text as the service's arguments (only the chosen kind's fields), the values to
    show back, and errors of what isn't even a number."""
    values = {**BLANK, **{key: post.get(key, "").strip() for key in BLANK if key != "weekdays"},
              "weekdays": post.getlist("weekdays")}
    errors: dict[str, list[str]] = {}
    arguments = {"name": values["name"], "kind": values["kind"], "timezone": values["timezone"]}
    if values["kind"] == FreezeWindow.Kind.WEEKLY:
        if not all(day.isdigit() for day in values["weekdays"]):
            errors["weekdays"] = ["Pick weekdays from the list."]
        arguments.update(weekdays=[int(day) for day in values["weekdays"] if day.isdigit()],
                         start_time=values["start_time"], end_time=values["end_time"])
    else:
        # datetime-local gives no offset: the service reads it in the window's time zone.
        arguments.update(starts_at=values["starts_at"], ends_at=values["ends_at"])
    return arguments, values, errors


@login_required
@require_POST
def freeze_window_add(request, project, env):
    access = project_access(request.user, project)
    environment = environment_of(access, env)
    require(request, check_access, access, Role.MAINTAINER, "change freeze windows", action="freeze_window.create",
            target=environment)
    arguments, values, errors = _read(request.POST)
    if not errors:
        try:
            window = freeze.freeze_window_create(environment=environment, actor=request.user, **arguments)
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            messages.success(request, f"Freeze window {window.name} added: {freeze.summary(window)}.")
            return _back(environment)
    # The page again, with the form as it was typed and each error next to its field.
    from .resources import environment_detail  # it includes this module's context()

    request.freeze_form = {"values": values, "errors": errors}
    return environment_detail(request, project, env)


@login_required
@require_POST
def freeze_window_remove(request, project, env, pk: int):
    access = project_access(request.user, project)
    environment = environment_of(access, env)
    window = get_object_or_404(FreezeWindow, environment=environment, pk=pk)
    window.environment = environment
    require(request, check_access, access, Role.MAINTAINER, "change freeze windows", action="freeze_window.delete",
            target=window)
    freeze.freeze_window_delete(window=window, actor=request.user)
    messages.success(request, f"Freeze window {window.name} deleted.")
    return _back(environment)


def _back(environment) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("environment_detail", args=[environment.project.slug, environment.slug]))
