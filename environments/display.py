"""What a resource's status reads as, everywhere: the pipeline, the graph, the resource page,
the API (`status.display`) and the admin (`Resource.rollout`).

One function, `display_state()`, decides. It reads only the resource's own fields and what
`selectors.with_status()` annotates (`behind`, `upstream_digest`, `awaiting_approval`), so a
page of a thousand resources reads no extra query.

Why one function: `phase` and `message` are written by two writers that don't agree on
a transient failure. After the last in-task attempt `reconcile.record_failure()` sets
`phase=failed` with "Will retry after attempt N: …" and `release()` sets `backoff_until`
and counts `failures_in_a_row`; but the rollout watch (`rollout.record()`) only leaves a
failed phase alone when `failed_digest` is the running digest, which a transient failure
never sets, so the next Deployment event writes `phase=progressing` and "rolling out 1/3"
over it, until the next retry fails again. A page read between the two said "Failed", one
read a second later "Progressing". What is true all along is that the last reconcile
failed and will be tried again: `failures_in_a_row` and `backoff_until`, which only a
finished reconcile writes. So those decide "retrying", whatever `phase` says meanwhile.

States, first match wins:

| state | when | tone |
|---|---|---|
| `retrying` | the last reconcile failed transiently (`failures_in_a_row`, `backoff_until`) | warn |
| `failed` | phase failed (a rollout that failed, or an error a person must fix) | error |
| `rolling_out` | phase progressing | info |
| `frozen` | phase waiting, something runs, and the environment is frozen now | muted |
| `awaiting_approval` | a change of what runs waits for approvals | warn |
| `waiting` | phase waiting (for the upstream to publish, to run healthy, to soak) | muted |
| `healthy` | phase ready | ok |
| `pending` | nothing reconciled yet | muted |

The "behind" line says how a promoted resource stands against its upstream, and never
claims "up to date" when nothing runs (a pin's `behind` is counted from its pinned digest
before the first reconcile, which is why a stuck first deploy used to read "no image yet"
beside "up to date").
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from datetime import datetime

from django.utils import timezone

from .models import Phase, Resource, SourceType

STATES = ("pending", "waiting", "rolling_out", "healthy", "failed", "retrying", "awaiting_approval", "frozen")
TONES = ("ok", "info", "warn", "error", "muted")
# Longer details fold: the first line shows, the rest opens on demand.
FOLD_AT = 120


@dataclass(frozen=True)
class Display:
    state: str  # one of STATES
    label: str  # the words on the status pill
    tone: str  # one of TONES: the CSS class `tone-<tone>`
    detail: str = ""  # the full message, "" when the label says it all
    ready: int = 0  # replicas of the new digest ready (rolling out)
    total: int = 0  # of replicas wanted
    behind: str = ""  # "" (an image source), "up to date", "2 behind", "not from upstream", "nothing running yet"…
    behind_tone: str = "muted"
    running: bool = False  # something runs (a digest was applied)
    key: str = ""  # the resource and what the detail says: the same while it says the same

    @property
    def element_id(self) -> str:
        """An id for the detail's element. A page's live refresh keeps an opened detail open
        (htmx `hx-preserve`) as long as it says the same; a new message is a new element."""
        return f"detail-{self.key}"

    @property
    def folds(self) -> bool:
        return len(self.detail) > FOLD_AT or "\n" in self.detail.strip()

    @property
    def summary(self) -> str:
        """The detail's first line, shortened: what a folded detail shows closed."""
        first = self.detail.strip().splitlines()[0] if self.detail.strip() else ""
        return first if len(first) <= FOLD_AT else first[: FOLD_AT - 1].rstrip() + "…"

    def as_dict(self) -> dict:
        """The API's `status.display`."""
        return {"state": self.state, "label": self.label, "tone": self.tone, "detail": self.detail}


def _frozen(resource: Resource, now: datetime) -> bool:
    # Only an environment already loaded (every page and the API load it): never a query per row.
    if not Resource.environment.is_cached(resource):
        return False
    until = resource.environment.frozen_until
    return until is not None and until > now


def _seconds(until: datetime, now: datetime) -> str:
    left = int((until - now).total_seconds() + 0.999)
    return f"{left} s" if left < 120 else f"{left // 60} min"


def _behind(resource: Resource) -> tuple[str, str]:
    if resource.source_type != SourceType.PROMOTE:
        return "", "muted"
    upstream_digest = getattr(resource, "upstream_digest", None)
    if not resource.current_digest:
        # Nothing runs: there is nothing to be up to date or behind with.
        if hasattr(resource, "upstream_digest") and not upstream_digest:
            return "upstream published nothing yet", "muted"
        return "nothing running yet", "muted"
    if not hasattr(resource, "behind"):
        return "", "muted"  # not annotated (the admin): say nothing rather than guess
    behind = resource.behind
    if behind is None:
        return "not from upstream", "muted"
    if behind == 0:
        return "up to date", "ok"
    return f"{behind} behind", "warn"


def display_state(resource: Resource, *, now: datetime | None = None, keyed: bool = True) -> Display:
    """What `resource`'s status reads as (see the module's table). No query. `keyed=False` leaves
    `key` empty: for the API, which shows no element (a page of rows spares the fingerprints)."""
    behind, behind_tone = _behind(resource)
    common = {"ready": resource.rollout_ready, "total": resource.rollout_total or resource.replicas,
              "behind": behind, "behind_tone": behind_tone, "running": bool(resource.current_digest)}
    shown = _decide(resource, now or timezone.now(), common)
    if not keyed:
        return shown
    fingerprint = zlib.crc32(f"{shown.state}\n{shown.detail}".encode())
    return replace(shown, key=f"{resource.pk or 0}-{fingerprint:08x}")


def _decide(resource: Resource, now: datetime, common: dict) -> Display:
    phase, message = resource.phase, (resource.message or "").strip()
    ready, total = common["ready"], common["total"]
    rolling_note = message.startswith("rolling out")  # the watch's own "rolling out 1/3": the label says it

    if resource.failures_in_a_row or resource.backoff_until:
        failures = resource.failures_in_a_row or 1
        label = "Retrying"
        if resource.backoff_until and resource.backoff_until > now:
            label = f"Retrying in {_seconds(resource.backoff_until, now)}"
        detail = message if message and not rolling_note else (
            f"The last attempt failed ({failures} in a row); Hoist tries again after a pause that grows with each failure.")
        return Display("retrying", label, "warn", detail, **common)
    if phase == Phase.FAILED:
        return Display("failed", "Failed", "error", message or "The rollout failed.", **common)
    if phase == Phase.PROGRESSING:
        return Display("rolling_out", f"rolling out {ready}/{total}", "info", "" if rolling_note else message, **common)
    if phase == Phase.WAITING and resource.current_digest and _frozen(resource, now):
        return Display("frozen", "Frozen", "muted", message, **common)
    awaiting = getattr(resource, "awaiting_approval", False) or (
        phase == Phase.WAITING and message.startswith("awaiting approval"))  # the engine's hold, when not annotated
    if awaiting:
        return Display("awaiting_approval", "awaiting approval", "warn",
                       message if phase == Phase.WAITING else "A change of what runs waits for maintainers' approvals.",
                       **common)
    if phase == Phase.WAITING:
        return Display("waiting", "Waiting", "muted", message, **common)
    if phase == Phase.READY:
        detail = message
        if not detail and resource.failed_digest and resource.failed_digest != resource.current_digest:
            detail = f"{resource.failed_digest[:19]}… failed; runs the last healthy digest."
        return Display("healthy", "Healthy", "ok", detail, **common)
    return Display("pending", "Pending", "muted", message or ("" if resource.current_digest else "Not reconciled yet."),
                   **common)


# `Resource.rollout`'s older, coarser vocabulary (the API's `status.rollout.state`).
LEGACY_STATE = {"retrying": "pending", "frozen": "waiting", "awaiting_approval": "waiting"}


def rollout_summary(resource: Resource, shown: Display | None = None) -> dict:
    """`Resource.rollout`: the same decision in the older shape {state, ready, total, summary}
    (`shown`: `display_state(resource)` when the caller has it already, as the API does)."""
    if shown is None:
        shown = display_state(resource)
    summary = shown.label if not shown.detail else f"{shown.label}: {shown.detail}"
    return {"state": LEGACY_STATE.get(shown.state, shown.state), "ready": shown.ready, "total": shown.total,
            "summary": summary}
