"""Template filters every page uses (registered as a builtin: no {% load %} needed).

`ago` and `since` replace Django's `timesince`, whose minute granularity made
fresh events read "0 minutes ago" on pages that refresh every few seconds.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()


def _span(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h"
    days = hours // 24
    return f"{days} day{'s' if days != 1 else ''}"


def _elapsed(value, now: datetime | None = None) -> float | None:
    if not isinstance(value, datetime):
        return None
    now = now or timezone.now()
    if timezone.is_naive(value) and timezone.is_aware(now):
        value = timezone.make_aware(value, timezone.get_current_timezone())
    return (now - value).total_seconds()


@register.filter
def ago(value) -> str:
    """'just now', '12 s ago', '5 min ago', '3 h ago', '4 days ago'; '' for no date; a future
    date (clock skew between processes) reads 'just now'."""
    elapsed = _elapsed(value)
    if elapsed is None:
        return ""
    if elapsed < 5:
        return "just now"
    return f"{_span(elapsed)} ago"


@register.filter
def since(value) -> str:
    """How long since `value`, without 'ago' ('for 5 min'): '3 s', '5 min', '2 days'."""
    elapsed = _elapsed(value)
    return "" if elapsed is None else _span(elapsed)


@register.filter
def seconds(value) -> str:
    """A duration in seconds for a table: '0.4 s', '12 s', '3 min 20 s', '2 h 5 min'; '' for None."""
    if value is None or value == "":
        return ""
    value = float(value)
    if value < 10:
        return f"{value:.1f} s"
    whole = int(round(value))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
