"""Freeze windows: times when nothing automatic changes what runs in an environment.

A window is either once (`starts_at` to `ends_at`) or weekly (on some weekdays,
from `start_time` to `end_time` in an IANA time zone; an end at or before the
start runs past midnight). Windows that overlap or touch make one freeze:
`current()` says when it began (`since`), when it thaws (`until`) and which
windows make it.

While an environment is frozen:

- the engine applies no new digest by itself: it asks `holds()` first
  (promotions.governance), and the resource waits for the thaw;
- a person's change of what runs needs a maintainer's override with a reason
  (`gate_person_change()`, called by `services.resource_update`): a
  `FreezeOverride` row, which also lets the engine apply that digest.

`refresh()` (the observer's tick) notices a freeze starting and ending: it
moves `Environment.frozen_until`, sends `freeze.started` / `freeze.ended`
(once per transition, whichever observer wins the conditional update), and at
the thaw applies the changes approved meanwhile and asks for a reconcile of
the environment's resources, so the newest waiting candidate is applied at once.

The windows themselves are written only through `freeze_window_create`,
`freeze_window_update` and `freeze_window_delete` (maintainers, audited).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone
from functools import lru_cache
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo, available_timezones

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime, parse_time

from projects import audit
from projects.models import Role
from projects.permissions import require_role

from . import signals
from .models import Environment, FreezeOverride, FreezeWindow, Kind, Resource

log = logging.getLogger(__name__)

UTC = dt_timezone.utc
MAX_WINDOWS = 50  # per environment
MAX_REASON = 2000
YEARS = (1970, 2999)  # once windows: dates outside are typing mistakes (and overflow time zone maths)
# How far a freeze is followed: windows that keep touching (every day, all day) make a freeze
# with no end; it is shown as thawing about a year on, and looked at again then.
HORIZON = timedelta(days=366)
STEP = timedelta(days=14)  # the first stretch of weekly occurrences looked at, either side
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WINDOW_FIELDS = ("name", "kind", "starts_at", "ends_at", "weekdays", "start_time", "end_time", "timezone")
ONCE_FIELDS = ("starts_at", "ends_at")
WEEKLY_FIELDS = ("weekdays", "start_time", "end_time")


@dataclass(frozen=True)
class Freeze:
    since: datetime  # when this freeze began (UTC)
    until: datetime  # when it thaws (UTC)
    names: list[str]  # the windows that make it, in the order they begin


# --- the window math --------------------------------------------------------------------------


@lru_cache(maxsize=None)
def time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name) if name in time_zones() else ZoneInfo("UTC")


def _at(day, moment: time, zone: ZoneInfo) -> datetime:
    """`moment` on `day` in `zone`, in UTC. A time the clocks skip (a DST gap) is read with
    the offset before the change (02:30 on a spring-forward night is 03:30 summer time); a time
    that happens twice (autumn) is its first occurrence."""
    return datetime.combine(day, moment.replace(tzinfo=None), tzinfo=zone).astimezone(UTC)


def occurrences(window: FreezeWindow, lo: datetime, hi: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The window's spans (UTC, start and end) that overlap or touch [lo, hi]."""
    if window.kind == FreezeWindow.Kind.ONCE:
        if window.starts_at and window.ends_at and window.starts_at <= hi and window.ends_at >= lo:
            yield window.starts_at.astimezone(UTC), window.ends_at.astimezone(UTC)
        return
    if window.start_time is None or window.end_time is None or not window.weekdays:
        return
    zone = _zone(window.timezone)
    days = set(window.weekdays)
    overnight = window.end_time <= window.start_time
    day = lo.astimezone(zone).date() - timedelta(days=1)  # yesterday's window may run past midnight
    last = hi.astimezone(zone).date()
    while day <= last:
        if day.weekday() in days:
            start = _at(day, window.start_time, zone)
            end = _at(day + timedelta(days=1) if overnight else day, window.end_time, zone)
            if end > start and start <= hi and end >= lo:
                yield start, end
        day += timedelta(days=1)


def _block_at(spans: list[tuple[datetime, datetime, str]], at: datetime) -> Freeze | None:
    """Merge the (sorted) spans that overlap or touch; the merged block holding `at`, if any."""
    since = until = None
    names: list[str] = []
    for start, end, name in spans:
        if until is not None and start <= until:
            until = max(until, end)
        else:
            if until is not None and since <= at < until:
                break
            since, until, names = start, end, []
        if name not in names:
            names.append(name)
    if until is not None and since <= at < until:
        return Freeze(since=since, until=until, names=names)
    return None


def freeze_of(windows: Iterable[FreezeWindow], at: datetime | None = None) -> Freeze | None:
    """The freeze these windows make at `at` (now), or None."""
    windows = list(windows)
    if not windows:
        return None
    at = (at or timezone.now()).astimezone(UTC)
    lo, hi = at - STEP, at + STEP
    while True:
        spans = sorted((start, end, w.name) for w in windows for start, end in occurrences(w, lo, hi))
        found = _block_at(spans, at)
        if found is None:
            return None
        # The block may go on beyond what was looked at: look further (twice as far), up to the horizon.
        back = found.since <= lo and at - found.since < HORIZON
        ahead = found.until >= hi and found.until - at < HORIZON
        if not (back or ahead):
            return found
        if back:
            lo = found.since - (at - lo)
        if ahead:
            hi = found.until + (hi - at)


def current(environment: Environment, at: datetime | None = None) -> Freeze | None:
    """Whether `environment` is frozen at `at` (now): since when, until when, by which windows.

    Reads `environment.freeze_windows.all()`, so a prefetch serves it without a query."""
    return freeze_of(environment.freeze_windows.all(), at)


def for_environments(environments: Iterable[Environment], at: datetime | None = None) -> dict[int, Freeze]:
    """{environment id: Freeze} for those of `environments` frozen at `at` (now). One query."""
    environments = list(environments)
    by_environment: dict[int, list[FreezeWindow]] = defaultdict(list)
    if environments:
        for window in FreezeWindow.objects.filter(environment_id__in=[e.pk for e in environments]):
            by_environment[window.environment_id].append(window)
    found = {}
    for environment in environments:
        frozen = freeze_of(by_environment.get(environment.pk, ()), at)
        if frozen is not None:
            found[environment.pk] = frozen
    return found


def holds(resource: Resource, digest: str, at: datetime | None = None) -> Freeze | None:
    """The freeze that keeps `digest` from being applied to `resource` now, or None.

    None when the environment isn't frozen, or a maintainer let this digest in during
    this freeze (an override since the freeze began; one without a digest, given when
    the change's digest wasn't known yet, lets the resource's change in). An override
    from an earlier freeze doesn't count.
    """
    frozen = current(resource.environment, at)
    if frozen is None:
        return None
    let_in = FreezeOverride.objects.filter(resource=resource, created_at__gte=frozen.since).filter(
        Q(digest=digest) | Q(digest=""))
    return None if let_in.exists() else frozen


def when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def sentence(environment: Environment, frozen: Freeze) -> str:
    names = f" ({', '.join(frozen.names)})" if frozen.names else ""
    return f"{environment.name} is frozen until {when(frozen.until)}{names}"


def gate_person_change(*, resource: Resource, actor, to_digest: str, override: str = "",
                       validate_only: bool = False) -> FreezeOverride | None:
    """A person is changing what `resource` runs (to `to_digest`, "" if not known yet).

    Not frozen: None. Frozen: refused unless a maintainer gives a reason (`override`), which
    is recorded as a FreezeOverride (returned; the caller's audit entry names its reason).
    Runs inside the caller's write (its transaction and audit entry). `validate_only`: the
    same checks, nothing recorded (a form's preview).
    """
    environment = resource.environment
    frozen = current(environment)
    if frozen is None:
        return None
    reason = (override or "").strip()
    if not reason:
        raise ValidationError({"freeze_override": [
            f"{sentence(environment, frozen)}; a maintainer can override with a reason."]})
    user = actor if getattr(actor, "is_authenticated", False) else None
    if actor is not None and (user is None or not environment.project.user_can(user, Role.MAINTAINER)):
        raise ValidationError({"freeze_override": [
            f"{sentence(environment, frozen)}: only maintainers of project {environment.project.slug} "
            "can override a freeze."]})
    if len(reason) > MAX_REASON:
        raise ValidationError({"freeze_override": [f"Keep the reason under {MAX_REASON} characters."]})
    if validate_only:
        return None
    return FreezeOverride.objects.create(resource=resource, digest=to_digest or "", reason=reason, actor=user)


# --- noticing a freeze start and end (the observer's tick) ------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def refresh(now: datetime | None = None) -> list[tuple[Environment, str]]:
    """Notice freezes that started or ended since the last look; returns (environment, event)
    for each transition this process made.

    Each transition is claimed with a conditional update of `frozen_until` (from what was
    read to the new value): with two observers only one wins, so each event is sent once.
    """
    now = now or timezone.now()
    has_windows = Exists(FreezeWindow.objects.filter(environment=OuterRef("pk")))
    environments = (
        Environment.objects.filter(Q(has_windows) | Q(frozen_until__isnull=False))
        .select_related("project").prefetch_related("freeze_windows").order_by("pk")
    )
    transitions: list[tuple[Environment, str]] = []
    for environment in environments:
        frozen = current(environment, now)
        was = environment.frozen_until
        until = frozen.until if frozen is not None else None
        if was == until:
            continue
        # A freeze that began after the noticed one ended is a new one (the thaw was missed,
        # e.g. no observer ran); one that began before it was extended or shortened.
        started = frozen is not None and (was is None or frozen.since > was)
        ended = was is not None and (frozen is None or frozen.since > was)
        try:
            with transaction.atomic():
                won = Environment.objects.filter(pk=environment.pk, frozen_until=was).update(frozen_until=until)
                if not won:
                    continue  # another observer got there first
                if ended:
                    _ended(environment, was, now, thawed=frozen is None)
                if started:
                    _started(environment, frozen)
        except Exception:  # one environment's trouble must not hold up the others' thaws; tried again next look
            log.exception("the freeze transition of %s failed", environment)
            continue
        environment.frozen_until = until
        transitions += [(environment, event) for event, happened in (("freeze.ended", ended), ("freeze.started", started))
                        if happened]
    return transitions


def _started(environment: Environment, frozen: Freeze) -> None:
    log.info("%s/%s frozen until %s (%s)", environment.project.slug, environment.slug, when(frozen.until),
             ", ".join(frozen.names))
    signals.event_happened.send(sender=Environment, project=environment.project, event="freeze.started", data={
        "environment": environment.slug, "since": _iso(frozen.since), "until": _iso(frozen.until),
        "windows": list(frozen.names),
    })


def _ended(environment: Environment, was: datetime, now: datetime, *, thawed: bool) -> None:
    before = current(environment, min(was, now) - timedelta(microseconds=1))
    log.info("%s/%s thawed", environment.project.slug, environment.slug)
    signals.event_happened.send(sender=Environment, project=environment.project, event="freeze.ended", data={
        "environment": environment.slug, "thawed_at": _iso(min(was, now)),
        "windows": list(before.names) if before is not None else [],
    })
    if not thawed:
        return  # straight into the next freeze: what waits goes on waiting
    from . import services  # services imports this module

    apply_approved = getattr(services, "change_requests_apply_approved", None)
    if apply_approved is not None:
        try:
            with transaction.atomic():
                apply_approved(environment)
        except Exception:  # the thaw itself must still be recorded; each request is audited
            log.exception("applying the changes approved during the freeze of %s failed", environment)
    # What waited for the thaw (the newest candidate of each track-latest resource) goes now,
    # not at the next look.
    waiting = list(environment.resources.filter(kind=Kind.DEPLOYMENT).order_by("pk").values_list("pk", flat=True))
    if waiting:
        signals.reconcile_requested.send(sender=Resource, resource_ids=waiting, repair=False)


# --- the windows: every write ------------------------------------------------------------------


def summary(window: FreezeWindow) -> str:
    """The window in words: "once, 2026-11-27 00:00 → 2026-11-30 23:00 Europe/Berlin" or
    "weekly, Mon, Fri 18:00 → 06:00 (next day) Europe/Berlin"."""
    if window.kind == FreezeWindow.Kind.ONCE:
        if not (window.starts_at and window.ends_at):
            return "once"
        zone = _zone(window.timezone)
        return (f"once, {window.starts_at.astimezone(zone):%Y-%m-%d %H:%M} → "
                f"{window.ends_at.astimezone(zone):%Y-%m-%d %H:%M} {window.timezone}")
    days = ", ".join(WEEKDAYS[day] for day in sorted(window.weekdays or []) if 0 <= day <= 6)
    if window.start_time is None or window.end_time is None:
        return f"weekly, {days}"
    overnight = " (next day)" if window.end_time <= window.start_time else ""
    return f"weekly, {days} {window.start_time:%H:%M} → {window.end_time:%H:%M}{overnight} {window.timezone}"


def _window_summary(window: FreezeWindow) -> dict[str, Any]:
    return {
        "environment": window.environment.slug, "name": window.name, "kind": window.kind,
        "starts_at": _iso(window.starts_at) if window.starts_at else None,
        "ends_at": _iso(window.ends_at) if window.ends_at else None,
        "weekdays": list(window.weekdays or []),
        "start_time": window.start_time.isoformat() if window.start_time else None,
        "end_time": window.end_time.isoformat() if window.end_time else None,
        "timezone": window.timezone,
    }


class _Errors(dict):
    def add(self, field: str, message: str) -> None:
        self.setdefault(field, []).append(message)


def _moment(value, field: str, zone_name: str, errors: _Errors) -> datetime | None:
    """A datetime (or ISO text); one without an offset is read in the window's time zone."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        parsed = parse_datetime(value.strip())
        if parsed is None:
            errors.add(field, "Give a date and time, e.g. 2026-11-27T18:00:00+01:00.")
            return None
        value = parsed
    if not isinstance(value, datetime):
        errors.add(field, "Give a date and time.")
        return None
    try:
        if timezone.is_naive(value):
            value = datetime.combine(value.date(), value.time(), tzinfo=_zone(zone_name))
        value = value.astimezone(UTC)
    except (OverflowError, ValueError):
        value = None
    if value is None or not YEARS[0] <= value.year <= YEARS[1]:
        errors.add(field, f"Give a date between the years {YEARS[0]} and {YEARS[1]}.")
        return None
    return value


def _clock(value, field: str, errors: _Errors) -> time | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            parsed = parse_time(value.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            errors.add(field, "Give a time of day, e.g. 18:00.")
            return None
        value = parsed
    if not isinstance(value, time) or value.tzinfo is not None:
        errors.add(field, "Give a time of day (in the window's time zone), e.g. 18:00.")
        return None
    return value.replace(microsecond=0)


def _weekdays(value, errors: _Errors) -> list[int]:
    if value in (None, ""):
        return []
    if not isinstance(value, (list, tuple)) or any(isinstance(d, bool) or not isinstance(d, int) for d in value):
        errors.add("weekdays", "Give a list of weekdays, 0 = Monday … 6 = Sunday.")
        return []
    if any(not 0 <= day <= 6 for day in value):
        errors.add("weekdays", "Weekdays go from 0 (Monday) to 6 (Sunday).")
        return []
    return sorted(set(value))


def _fill(window: FreezeWindow, changes: dict[str, Any], *, now: datetime) -> None:
    """Check `changes` against `window` (as stored, or new) and write them to it: every rule of a
    window, each error naming its field. Raises ValidationError with all of them at once."""
    errors = _Errors()
    for field in sorted(set(changes) - set(WINDOW_FIELDS)):
        errors.add(field, "Unknown field.")

    if "name" in changes:
        name = changes["name"]
        window.name = name.strip() if isinstance(name, str) else ""
    if not window.name:
        errors.add("name", "Give the window a name, e.g. Black Friday.")
    elif len(window.name) > 200:
        errors.add("name", "Keep the name under 200 characters.")

    if "timezone" in changes:
        zone_name = changes["timezone"]
        window.timezone = zone_name.strip() if isinstance(zone_name, str) else ""
    if window.timezone not in time_zones():
        errors.add("timezone", f"{str(window.timezone)[:64]!r} is not a time zone: give an IANA name such as "
                               "Europe/Berlin or UTC.")
    zone_name = window.timezone if window.timezone in time_zones() else "UTC"

    if "kind" in changes:
        window.kind = changes["kind"]
    if window.kind not in FreezeWindow.Kind.values:
        errors.add("kind", "Choose once (a date range) or weekly (on weekdays, between two times).")
        raise ValidationError(errors)
    once = window.kind == FreezeWindow.Kind.ONCE
    mine, others = (ONCE_FIELDS, WEEKLY_FIELDS) if once else (WEEKLY_FIELDS, ONCE_FIELDS)
    for field in others:
        if changes.get(field) not in (None, "", [], ()):
            errors.add(field, f"Only for {'weekly' if once else 'once'} windows.")
    # The other kind's fields go (a window changed from weekly to once keeps no weekdays).
    window.weekdays, window.start_time, window.end_time = (
        ([], None, None) if once else (window.weekdays, window.start_time, window.end_time))
    if not once:
        window.starts_at = window.ends_at = None

    if once:
        if "starts_at" in changes:
            window.starts_at = _moment(changes["starts_at"], "starts_at", zone_name, errors)
        if "ends_at" in changes:
            window.ends_at = _moment(changes["ends_at"], "ends_at", zone_name, errors)
        for field in ONCE_FIELDS:
            if getattr(window, field) is None and field not in errors:
                errors.add(field, "Required for a once window: when the freeze "
                                  f"{'starts' if field == 'starts_at' else 'ends'}.")
        if window.starts_at and window.ends_at:
            if window.ends_at <= window.starts_at:
                errors.add("ends_at", "The end must be after the start.")
            elif ("ends_at" in changes or "kind" in changes or window.pk is None) and window.ends_at <= now:
                errors.add("ends_at", "This window would be over already: check the date.")
    else:
        if "weekdays" in changes:
            window.weekdays = _weekdays(changes["weekdays"], errors)
        if not window.weekdays and "weekdays" not in errors:
            errors.add("weekdays", "Pick at least one weekday.")
        for field in ("start_time", "end_time"):
            if field in changes:
                setattr(window, field, _clock(changes[field], field, errors))
            if getattr(window, field) is None and field not in errors:
                errors.add(field, "Required for a weekly window (an end at or before the start runs past midnight).")
    if errors:
        raise ValidationError(dict(errors))


def _lock_environment(environment: Environment) -> Environment:
    return Environment.objects.select_for_update().select_related("project").get(pk=environment.pk)


def freeze_window_create(*, environment: Environment, actor=None, validate_only: bool = False,
                         **fields: Any) -> FreezeWindow:
    """Add a freeze window to `environment` (maintainers)."""
    with audit.attempt("freeze_window.create", actor=actor, project=environment.project,
                       target_type="freezewindow", target_repr=f"{environment}: {fields.get('name', '')}"[:300]) as entry:
        require_role(actor, environment.project, Role.MAINTAINER, "change freeze windows")
        locked = _lock_environment(environment)  # creates of one environment take turns: the limit holds
        window = FreezeWindow(environment=locked, kind=fields.get("kind", ""), name="",
                              created_by=actor if getattr(actor, "is_authenticated", False) else None)
        _fill(window, fields, now=timezone.now())
        if locked.freeze_windows.count() >= MAX_WINDOWS:
            raise ValidationError({NON_FIELD_ERRORS: [
                f"{locked.name} has {MAX_WINDOWS} freeze windows already: delete one that is over first."]})
        if validate_only:
            entry.skip()
            return window
        window.save()
        entry.describe(target=window, after=_window_summary(window))
    return window


def freeze_window_update(*, window: FreezeWindow, actor=None, validate_only: bool = False,
                         **changes: Any) -> FreezeWindow:
    """Change a freeze window (maintainers); only the fields given change. Changing its kind
    drops the other kind's fields."""
    environment = window.environment
    with audit.attempt("freeze_window.update", actor=actor, target=window) as entry:
        require_role(actor, environment.project, Role.MAINTAINER, "change freeze windows")
        _lock_environment(environment)
        stored = FreezeWindow.objects.select_related("environment__project").get(pk=window.pk)
        before = _window_summary(stored)
        _fill(stored, changes, now=timezone.now())
        if validate_only:
            entry.skip()
            return stored
        stored.save()
        entry.describe(target=stored, before=before, after=_window_summary(stored))
    return stored


def freeze_window_delete(*, window: FreezeWindow, actor=None) -> None:
    """Delete a freeze window (maintainers). A freeze it made ends at the observer's next look."""
    # target_id given: after delete() the row has no pk left to name it by.
    with audit.attempt("freeze_window.delete", actor=actor, target=window, target_id=window.pk) as entry:
        require_role(actor, window.environment.project, Role.MAINTAINER, "change freeze windows")
        entry.describe(before=_window_summary(window))
        window.delete()
