"""The API tokens page: create (the key is shown once, on the response to the POST) and revoke."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from projects import services
from projects.models import ApiToken

EXPIRY_CHOICES = [("", "Never"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]


def _page(request, **extra):
    context = {
        "tokens": ApiToken.objects.filter(user=request.user),
        "expiry_choices": EXPIRY_CHOICES,
        "errors": {},
        **extra,
    }
    response = render(request, "projects/tokens/token_list.html", context)
    response["Cache-Control"] = "no-store"  # the page may carry a key, shown once
    return response


@login_required
def token_list(request):
    if request.method != "POST":
        return _page(request)
    name = request.POST.get("name", "")
    days = request.POST.get("expires_in_days", "")
    errors = {}
    expires_at = None
    if days:
        if not days.isdigit() or not 1 <= int(days) <= 3650:
            errors["expires_in_days"] = ["Pick an expiry from the list."]
        else:
            expires_at = timezone.now() + timedelta(days=int(days))
    if not errors:
        try:
            token, key = services.token_create(user=request.user, name=name, expires_at=expires_at, actor=request.user)
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            return _page(request, created=token, key=key)
    return _page(request, errors=errors, name=name, days=days)


@login_required
@require_POST
def token_revoke(request, pk: int):
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    services.token_revoke(token=token, actor=request.user)
    messages.success(request, f"Token {token.name} ({token.prefix}…) is revoked.")
    return redirect("token_list")
