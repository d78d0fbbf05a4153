"""What a sign-in gets while its (username, address) pair is locked out: django-axes' AXES_LOCKOUT_CALLABLE.

Axes counts failed sign-ins at every door that checks a password (the login
page, the admin's login, HTTP Basic at POST /api/v1/tokens/) and, once the
pair is over the limit, replaces the response with this one: a page for the
browser, the API's one error body for the API. Both answer 429 with
Retry-After, the seconds until the cool-off (counted from the failure that
locked the pair) ends.
"""

from __future__ import annotations

import math

from django.conf import settings
from django.db.models import Max
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from .doors import via_for_path


def username(request, credentials: dict | None) -> str | None:
    """The name a sign-in is counted under (AXES_USERNAME_CALLABLE): what was typed, cut to the
    255 characters axes' tables hold (a longer name would make PostgreSQL refuse the insert: a 500)."""
    name = (credentials or {}).get("username") if credentials else request.POST.get("username")
    return name[:255] if isinstance(name, str) else name


def seconds_left(request, credentials: dict | None) -> int:
    """Until the lock lifts: the cool-off after the pair's last counted failure."""
    from axes.helpers import get_client_username, get_cool_off
    from axes.models import AccessAttempt

    cool_off = get_cool_off(request)
    last = (
        AccessAttempt.objects.filter(username=get_client_username(request, credentials), ip_address=request.axes_ip_address)
        .aggregate(last=Max("attempt_time"))["last"]
    )
    if last is None:
        return int(cool_off.total_seconds())
    return max(1, math.ceil((last + cool_off - timezone.now()).total_seconds()))


def locked_out(request, original_response=None, credentials: dict | None = None) -> HttpResponse:
    seconds = seconds_left(request, credentials)
    minutes = math.ceil(seconds / 60)
    wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
    if via_for_path(request.path_info) == "api":
        detail = f"Too many failed sign-ins for this user from your address; try again in {wait}."
        response = JsonResponse({"detail": detail, "code": "throttled", "errors": {}}, status=settings.AXES_HTTP_RESPONSE_CODE)
    else:
        admin = via_for_path(request.path_info) == "admin"
        context = {"wait": wait, "login_url": reverse("admin:login" if admin else "login")}
        response = render(request, "registration/locked_out.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)
    response["Retry-After"] = str(seconds)
    return response
