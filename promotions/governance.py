"""What may change what runs right now, asked by the engine before it applies a new digest.

Two rules from the environment, on top of the engine's own (forward only, never a
failed digest again):

- **Freeze windows** (`environments.freeze`): while one is on, no new digest is
  applied by itself; the resource waits and is looked at again when the window
  ends, when the newest candidate is taken. A digest a maintainer let in with
  an override (a person's change, with a reason) goes ahead.
- **Approvals of automatic changes** (`Environment.approve_automatic`): a digest
  track-latest would take waits, as a change request, for the environment's
  approvals; once approved, it is applied like any other.

A rollback after a failed rollout restores what ran healthy and is never held;
the first deploy of a new resource isn't either (nothing runs there yet to keep).
A person's own source changes are governed where they are asked for
(`environments.services.resource_update`), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from environments import freeze, services
from environments.models import Binding, ChangeReason, ChangeRequest, Resource, SourceType


@dataclass(frozen=True)
class Hold:
    message: str
    recheck_at: datetime | None = None


def hold(resource: Resource, digest: str, reason: str) -> Hold | None:
    """Why `digest` may not be applied to `resource` now, or None if it may."""
    if not resource.current_digest or digest == resource.current_digest or reason == ChangeReason.ROLLBACK:
        return None
    frozen = freeze.holds(resource, digest)
    if frozen is not None:
        return Hold(f"{freeze.sentence(resource.environment, frozen)}: {digest[:19]}… waits for the thaw", frozen.until)
    environment = resource.environment
    automatic = resource.source_type == SourceType.PROMOTE and resource.binding == Binding.TRACK_LATEST
    if not (automatic and environment.approve_automatic and environment.required_approvals):
        return None
    approved = ChangeRequest.objects.filter(
        resource=resource, kind=ChangeRequest.Kind.AUTOMATIC, to_digest=digest,
        status__in=(ChangeRequest.Status.APPROVED, ChangeRequest.Status.APPLIED),
    ).first()
    if approved is not None:
        if approved.status == ChangeRequest.Status.APPROVED:
            ChangeRequest.objects.filter(pk=approved.pk).update(status=ChangeRequest.Status.APPLIED)
        return None
    request = services.change_request_automatic(resource=resource, to_digest=digest)
    approvals = request.decisions.filter(approved=True).count()
    return Hold(f"awaiting approval ({approvals}/{request.required}) of {digest[:19]}… (track latest)")
