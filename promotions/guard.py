"""Bulkheads for outbound calls: one slow or hostile registry or cluster costs only its own resources.

Two mechanisms, both kept in the database so every worker process, and every
machine, sees the same state:

- **A concurrency limit per host** (`GateSlot`): at most N calls to one
  registry host at a time, installation-wide. A call that finds every slot
  taken does not wait for them (they may be stuck on a black hole until
  their timeout); it fails at once as retryable, and the resource is looked
  at again later. N below the worker count means a host that never answers
  can hold N workers, never all of them.
- **A circuit breaker per host and per cluster** (`Gate`): after
  HOIST_BREAKER_FAILURES consecutive transient failures (timeouts, refused
  connections, 5xx) it opens for a cooldown, during which calls fail at once
  without touching the network. After the cooldown one call at a time is let
  through as a probe: success closes the breaker, failure opens it again for
  twice as long (up to HOIST_BREAKER_MAX_COOLDOWN_S).

An answer that is an error but an answer (404, 401, a 422 from the API
server) proves the host is alive: it closes the breaker like a success.

A refusal is a `Closed` exception carrying `retry_at`, the earliest moment
trying again makes sense; callers turn it into their own retryable error.
"""

from __future__ import annotations

import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterator

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .models import Gate, GateSlot


class Closed(Exception):
    """Not now: the breaker is open, a probe is in flight, or every slot is taken."""

    def __init__(self, message: str, retry_at: datetime):
        super().__init__(message)
        self.message = message
        self.retry_at = retry_at


@dataclass
class _State:
    failures: int = 0
    open: bool = False
    probing: bool = False


# Hosts seen healthy lately, by this process: (key → until when, monotonic). A healthy host
# is the common case; reading its row before every call would cost a query each time, and
# a breaker that notices another process's failures a second late loses nothing.
_clean: dict[str, float] = {}
CLEAN_MEMO_S = 1.0


def check(key: str, *, lease_s: float, label: str) -> _State:
    """May a call to `key` go now? Raises Closed if not; the state tells `passed`/`failed` what to write."""
    if _clean.get(key, 0) > time.monotonic():
        return _State()
    row = Gate.objects.filter(key=key).values("failures", "open_until", "last_error").first()
    if row is None or row["open_until"] is None:
        if row is None or not row["failures"]:
            _clean[key] = time.monotonic() + CLEAN_MEMO_S
        return _State(failures=row["failures"] if row else 0)
    now = timezone.now()
    if now < row["open_until"]:
        raise Closed(f"{label} is not being called for now: it failed {row['failures']} times in a row "
                     f"(last: {row['last_error'][:300]}); next try at {row['open_until']:%H:%M:%S} UTC",
                     row["open_until"])
    # Half-open: one probe at a time, under a lease so a killed prober doesn't keep it forever.
    taken = Gate.objects.filter(key=key).filter(Q(probe_until__isnull=True) | Q(probe_until__lt=now)).update(
        probe_until=now + timedelta(seconds=lease_s))
    if not taken:
        raise Closed(f"{label} is being tried again by another call after {row['failures']} failures; "
                     "waiting for its outcome", now + timedelta(seconds=1))
    return _State(failures=row["failures"], open=True, probing=True)


def passed(key: str, state: _State) -> None:
    """The host answered: close the breaker (no write at all when it was closed and clean)."""
    if state.failures or state.open:
        close(key)


def close(key: str) -> None:
    """The host is known to answer (e.g. a watch listed everything): close its breaker now."""
    Gate.objects.filter(key=key).filter(Q(failures__gt=0) | Q(open_until__isnull=False)).update(
        failures=0, open_until=None, probe_until=None, cooldown_s=0, last_error="")


def failed(key: str, state: _State, error: str) -> None:
    """A transient failure: count it; open the breaker at the threshold, or again after a failed probe."""
    _clean.pop(key, None)
    threshold = max(1, settings.HOIST_BREAKER_FAILURES)
    base, ceiling = settings.HOIST_BREAKER_COOLDOWN_S, settings.HOIST_BREAKER_MAX_COOLDOWN_S
    with transaction.atomic():
        gate = Gate.objects.select_for_update().filter(key=key).first()
        if gate is None:
            try:
                with transaction.atomic():
                    gate = Gate.objects.create(key=key)
            except IntegrityError:  # created by another process meanwhile
                gate = Gate.objects.select_for_update().get(key=key)
        gate.failures += 1
        gate.last_error = error[:2000]
        now = timezone.now()
        if state.probing or (gate.open_until is None and gate.failures >= threshold):
            gate.cooldown_s = min(ceiling, gate.cooldown_s * 2 if state.probing and gate.cooldown_s else base)
            gate.open_until = now + timedelta(seconds=gate.cooldown_s)
            gate.probe_until = None
        gate.save()


# --- slots -------------------------------------------------------------------------------------


def _ensure_slots(key: str, limit: int) -> None:
    GateSlot.objects.bulk_create([GateSlot(key=key, slot=n) for n in range(limit)], ignore_conflicts=True)


def take_slot(key: str, limit: int, *, lease_s: float, label: str) -> tuple[int, str]:
    """One of `limit` concurrent calls to `key`, or Closed at once when all are held."""
    token = secrets.token_hex(8)
    now = timezone.now()
    rows = list(GateSlot.objects.filter(key=key, slot__lt=limit).values_list("slot", "held_until"))
    if len(rows) < limit:  # the first call to this host, or the limit was raised
        _ensure_slots(key, limit)
        rows = list(GateSlot.objects.filter(key=key, slot__lt=limit).values_list("slot", "held_until"))
    for slot, held_until in rows:
        if held_until is not None and held_until >= now:
            continue
        # Compare-and-set on the lease we saw: two processes can't both take this slot.
        same = Q(held_until__isnull=True) if held_until is None else Q(held_until=held_until)
        if GateSlot.objects.filter(same, key=key, slot=slot).update(token=token, held_until=now + timedelta(seconds=lease_s)):
            return slot, token
    soonest = min((held for _, held in rows if held is not None), default=now)
    retry_at = min(soonest, now + timedelta(seconds=5))
    raise Closed(f"{label} already has {limit} calls from Hoist in flight; not adding another", retry_at)


def give_back(key: str, slot: int, token: str) -> None:
    GateSlot.objects.filter(key=key, slot=slot, token=token).update(held_until=None, token="")


# --- the one way callers use it ---------------------------------------------------------------


@contextmanager
def passage(key: str, *, label: str, lease_s: float, limit: int = 0,
            transient: Callable[[BaseException], bool | None]) -> Iterator[_State]:
    """Run the block as one call to `key`: breaker checked, a slot held (if `limit`), outcome recorded.

    `transient(exc)`: True if this error counts against the host (no answer, 5xx);
    False if it proves the host answered; None if it says nothing about the host.
    """
    state = check(key, lease_s=lease_s, label=label)
    try:
        held = take_slot(key, limit, lease_s=lease_s, label=label) if limit > 0 else None
    except Closed:
        if state.probing:  # this call won't probe after all: let the next one
            Gate.objects.filter(key=key).update(probe_until=None)
        raise
    started = time.monotonic()
    try:
        yield state
    except Exception as exc:
        verdict = transient(exc)
        if verdict:
            failed(key, state, f"{exc} (after {time.monotonic() - started:.1f} s)")
        elif verdict is False:
            passed(key, state)
        elif state.probing:  # the probe never reached the host: let the next call probe
            Gate.objects.filter(key=key).update(probe_until=None)
        raise
    else:
        passed(key, state)
    finally:
        if held is not None:
            give_back(key, *held)
