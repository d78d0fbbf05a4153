"""What Hoist last wrote to each object, so a watch event tells Hoist's own writes from others'.

Every apply returns the object as stored. Hoist keeps, per resource and kind,
a *marker* of that answer (`Resource.applied_versions`):

- Deployment and Ingress: `metadata.generation`, which the API server bumps
  on every change of the spec and never for status (the Deployment
  controller writes status all the time during a rollout);
- Service, Secret and ImageSource: `metadata.resourceVersion`, which moves
  on every write (Hoist writes the ImageSource status itself and records the
  version that write returned).

When the observer sees an object whose marker is newer than the recorded
one, someone else changed it (a `kubectl edit`, a `kubectl scale`, a
controller fighting Hoist): that is drift, repaired at once. This is what
lets the minute sweep leave alone the clusters the observer watches: at rest
nothing is read or written, and the cost grows with changes, not with
resources.
"""

from __future__ import annotations

GENERATION_KINDS = frozenset({"Deployment", "Ingress"})

SAME, STALE, OTHER, UNKNOWN = "same", "stale", "other", "unknown"


def marker(kind: str, obj: dict | None) -> str:
    """`g<generation>` or `rv<resourceVersion>`; empty when the object says neither."""
    meta = (obj or {}).get("metadata") or {}
    if kind in GENERATION_KINDS and meta.get("generation"):
        return f"g{meta['generation']}"
    version = meta.get("resourceVersion")
    return f"rv{version}" if version else ""


def compare(seen: str, recorded: str) -> str:
    """How a marker a watch saw relates to the one Hoist recorded.

    SAME: Hoist's own write. STALE: an event older than Hoist's last write (the
    watch lags behind a reconcile that finished meanwhile). OTHER: a later
    write by someone else. UNKNOWN: nothing recorded to compare with.

    Generations are sequence numbers by contract. Resource versions are
    opaque by the API conventions; an etcd-backed API server hands out
    increasing integers, so they are ordered when both are integers, and any
    other difference counts as someone else's write.
    """
    if not seen or not recorded:
        return UNKNOWN
    if seen == recorded:
        return SAME
    (seen_kind, seen_n), (recorded_kind, recorded_n) = _split(seen), _split(recorded)
    if seen_kind == recorded_kind and seen_n.isdigit() and recorded_n.isdigit() and int(seen_n) < int(recorded_n):
        return STALE
    return OTHER


def _split(value: str) -> tuple[str, str]:
    return ("g", value[1:]) if value.startswith("g") else ("rv", value[2:])
