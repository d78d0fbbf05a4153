"""One limiter per registry host, shared by everything Hoist sends there and by every process.

Tag watches, resolves, mirrors and keep tags all reach a registry through the
registry client, which asks `pace()` before each request. The budget is a
rate per host (requests per second, `RegistryHost.rate_per_s` or
HOIST_REGISTRY_RATE_PER_S), kept in the host's row as a GCRA: `paced_until`
is the moment from which the next request is on schedule, and reserving n
requests moves it on by n/rate. A row lock makes reservations from many
processes add up; a call whose turn is further away than it may wait is put
off (`Deferred`) instead of holding its worker.

A registry that answers 429 (or 503) with `Retry-After` is taken at its word:
nothing more is sent to it before then, by anyone (`told_to_wait`).

The host's row also counts requests per minute and keeps the last error, for
the registries page and the API. Rows are created the first time a host is
called, with every limit empty (the installation's defaults).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Iterator

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from environments.models import RegistryHost

from .registry import Deferred

# Hosts this process knows have a row (rows are never deleted while Hoist runs).
_rows: set[str] = set()
_rows_lock = threading.Lock()
# Per-host settings as read lately: (monotonic expiry, Settings). A changed limit is seen
# within SETTINGS_MEMO_S everywhere without reading the row before every request.
_memo: dict[str, tuple[float, "Limits"]] = {}
SETTINGS_MEMO_S = 2.0
_local = threading.local()


@dataclass(frozen=True)
class Limits:
    host: str
    rate_per_s: float
    watch_interval_s: int
    concurrency: int  # 0: no limit
    protect: bool


def ensure_row(host: str) -> None:
    if host in _rows:
        return
    try:
        with transaction.atomic():
            RegistryHost.objects.get_or_create(host=host[:255])
    except IntegrityError:  # created by another process meanwhile
        pass
    with _rows_lock:
        _rows.add(host)


def limits_for(host: str) -> Limits:
    """The limits that apply to `host` now: its row's, else the installation's defaults."""
    cached = _memo.get(host)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    ensure_row(host)
    row = RegistryHost.objects.filter(host=host[:255]).only(
        "host", "rate_per_s", "watch_interval_s", "concurrency", "protect").first() or RegistryHost(host=host)
    found = Limits(host=host, **row.effective())
    _memo[host] = (time.monotonic() + SETTINGS_MEMO_S, found)
    return found


def forget(host: str | None = None) -> None:
    """Drop what this process remembers (tests change limits and expect them at once)."""
    if host is None:
        _memo.clear()
        with _rows_lock:
            _rows.clear()
    else:
        _memo.pop(host, None)


def _epoch(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


def reserve(host: str, count: int = 1, *, max_wait: float) -> float:
    """Reserve `count` requests to `host`; returns when (epoch seconds) the first may go, the
    rest following 1/rate apart. Raises Deferred, reserving nothing, if the first would have
    to wait longer than `max_wait` seconds."""
    limits = limits_for(host)
    interval = 1.0 / limits.rate_per_s
    # A second's worth of requests may go at once after a quiet spell (the bucket's depth).
    tolerance = max(0.0, round(limits.rate_per_s) - 1) * interval
    with transaction.atomic():
        row = (RegistryHost.objects.select_for_update().filter(host=host[:255])
               .values("pk", "paced_until", "throttled_until", "minute", "minute_requests").first())
        if row is None:  # removed in the admin meanwhile: it comes back
            _rows.discard(host)
            ensure_row(host)
            return reserve(host, count, max_wait=max_wait)
        now = time.time()
        throttled = _epoch(row["throttled_until"])
        theoretical = max(row["paced_until"], now, throttled)
        first = max(now, theoretical - tolerance, throttled)
        if first - now > max_wait:
            why = ("asked Hoist to wait (HTTP 429)" if throttled > now
                   else f"is at its limit of {limits.rate_per_s:g} requests per second")
            raise Deferred(f"registry {host} {why}; next request at {_when(first):%H:%M:%S} UTC", _when(first))
        minute = int(now // 60)
        counts = {"minute": minute, "minute_requests": row["minute_requests"] + count}
        if row["minute"] != minute:
            counts = {"minute": minute, "minute_requests": count,
                      "last_minute_requests": row["minute_requests"] if row["minute"] == minute - 1 else 0}
        RegistryHost.objects.filter(pk=row["pk"]).update(paced_until=theoretical + count * interval, **counts)
    return first


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=dt_timezone.utc)


@contextmanager
def prepaid(count: int = 1) -> Iterator[None]:
    """The next `count` requests of this thread were reserved (and waited for) already."""
    previous = getattr(_local, "prepaid", 0)
    _local.prepaid = count
    try:
        yield
    finally:
        _local.prepaid = previous


@contextmanager
def governing(host: str) -> Iterator[None]:
    """Requests this thread sends to `host` inside the block are paced (`mirror.calling` uses it).

    Only the calling thread is paced: a mirror's blob transfers run on the copy's own few
    threads (bounded by its parallelism) and are not given a database connection each."""
    hosts = getattr(_local, "hosts", None)
    if hosts is None:
        hosts = _local.hosts = {}
    hosts[host] = hosts.get(host, 0) + 1
    try:
        yield
    finally:
        hosts[host] -= 1
        if not hosts[host]:
            del hosts[host]


def pace(host: str, seconds_left: float | None) -> None:
    """The registry client's hook before every request: wait for `host`'s turn, or put the
    call off when that turn is further away than HOIST_REGISTRY_MAX_WAIT_S (or the call's deadline)."""
    if host not in getattr(_local, "hosts", {}):
        return  # not a governed call (a copy's blob thread, a client used on its own)
    paid = getattr(_local, "prepaid", 0)
    if paid > 0:
        _local.prepaid = paid - 1
        return
    max_wait = settings.HOIST_REGISTRY_MAX_WAIT_S
    if seconds_left is not None:
        max_wait = min(max_wait, seconds_left)
    first = reserve(host, 1, max_wait=max_wait)
    delay = first - time.time()
    if delay > 0:
        time.sleep(delay)


def told_to_wait(host: str, seconds: float) -> None:
    """The registry answered 429/503 with Retry-After: nothing is sent before then, by anyone."""
    if host not in getattr(_local, "hosts", {}):
        return  # a blob thread's answer: its copy fails as retryable and is tried again later
    ensure_row(host)
    until = timezone.now() + timedelta(seconds=max(0.0, seconds))
    RegistryHost.objects.filter(host=host[:255]).filter(
        Q(throttled_until__isnull=True) | Q(throttled_until__lt=until)).update(throttled_until=until)


def noted_error(host: str, message: str) -> None:
    """Remember the last thing that went wrong with `host` (for the registries page)."""
    ensure_row(host)
    RegistryHost.objects.filter(host=host[:255]).update(last_error=message[:2000], last_error_at=timezone.now())
