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
desired_state_changed = Signal()

# Reconcile these resources although nothing changed ("Reconcile now", "Retry").
#   resource_ids  list of Resource ids
reconcile_requested = Signal()

# A resource is being deleted: its objects must leave its cluster. Sent before
# the row goes, with everything needed to find them afterwards:
#   cluster_id, namespace, project, environment, resource (slugs and name)
resource_removed = Signal()
