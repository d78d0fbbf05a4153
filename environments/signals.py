"""What desired state tells the engine, without importing it (arrows point down).

`environments` decides *what* should run; `promotions` (the engine) makes it
run. The services here send these signals inside the write's transaction;
the engine connects its receivers in `PromotionsConfig.ready()`
(`promotions/receivers.py`). Receivers run synchronously, in that same
transaction, and must only record and enqueue: never talk to a cluster or a
registry.
"""

from django.dispatch import Signal

# What a resource should run (or its config) changed. Keyword arguments:
#   resource     the Resource, as just written
#   reason       environments.models.ChangeReason ("" when only the config changed)
#   to_digest    the digest it should run now ("" when not known yet, or config only)
#   artifact     the Artifact it comes from, or None
#   actor        the user who asked, or None (Hoist itself)
#   actor_label  who asked, when not a user (e.g. "registry webhook")
#   change_request  the approved ChangeRequest this change applies, or None
desired_state_changed = Signal()

# Reconcile these resources although nothing changed ("Reconcile now", "Retry", a freeze that ended).
#   resource_ids  list of Resource ids
#   repair        re-apply every object whatever Hoist believes (default: a person asked); False
#                 for Hoist's own "look again now"
reconcile_requested = Signal()

# A resource is being deleted: its objects must leave its cluster. Sent before
# the row goes, with everything needed to find them afterwards:
#   cluster_id, namespace, project, environment, resource (slugs and name)
resource_removed = Signal()

# Something people may want to hear about happened (outgoing notifications, promotions.notifications).
# Sent inside the write's transaction; receivers only record and queue, on commit. Keyword arguments:
#   project  the Project
#   event    one of EVENTS
#   data     JSON-safe details: environment, resource, digest, from_digest, actor, reason,
#            promotion_id or request_id, and the like; optionally `url`, the path of the page
#            it is about (else the resource's, the environment's or the project's page)
# The receiver never raises into the sender and never calls the network inline: each webhook's
# delivery is recorded in a savepoint and sent by a task after commit.
event_happened = Signal()

EVENTS = (
    "promotion.healthy", "promotion.failed", "promotion.rolled_back",
    "approval.requested", "approval.approved", "approval.rejected",
    "freeze.started", "freeze.ended",
    "test",
)

# A change of what runs waits for approvals (environments.models.ChangeRequest). Keyword arguments:
#   request   the ChangeRequest, as just created
#   reason    environments.models.ChangeReason of the change it would make
#   actor     who asked (None: Hoist itself, an automatic track-latest change)
change_requested = Signal()

# A change request was decided without being applied here (approved but waiting, rejected,
# superseded, cancelled); an applied one arrives as desired_state_changed with `change_request`.
#   request   the ChangeRequest, with its new status
change_request_decided = Signal()
