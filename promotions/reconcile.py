"""Reconcile one resource into its cluster, as small steps.

    claim()         take the resource for this worker (a lease, not a lock)
    decide()        which digest should run (pin / upstream's healthy or published
                    latest, after its soak / own latest; a rollback after a failure)
    make_pullable() same cluster: the upstream's reference as is;
                    other cluster: mirror through the central registry first
    apply_objects() server-side apply Secret, Deployment, Service, Ingress, then
                    read the rollout and apply the ImageSource (spec and status)
    record()        Promotion rows and resource status, compare-and-set; dependants
                    that follow "published" (and, if healthy already, "healthy") queued

No database transaction or row lock is held across cluster or registry
calls: a reconcile claims its resource with a conditional update (a lease of
HOIST_RECONCILE_LEASE_S, renewed around slow steps), works without a
transaction, then records in one short transaction that checks the claim is
still its own. Two workers therefore never interleave on one resource; a
worker killed mid-task loses its lease and the observer hands the work on.

Forward-only (DESIGN guarantee 3): every candidate carries the publishing
resource's artifact sequence, and a candidate older than what the resource
already runs is a no-op, checked before applying and again when recording,
so a late or retried task never rolls anything back.

The rollout is judged by `promotions.rollout`: right after the apply (most
rollouts of a new digest on a warm cluster are healthy at once), and then
by the observer's watch until it is healthy or failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generator, Iterator

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from environments.models import Artifact, Binding, Cluster, Follow, Kind, Phase, Resource, SourceType
from environments.selectors import latest_artifact

from . import applied, governance, guard, metrics, mirror, notifications, queue, rollout, rows
from .kube import IMAGESOURCE_API, ClusterClient, ClusterError, fingerprint as kube_fingerprint
from .models import Promotion
from .registry import RegistryError, parse_reference

log = logging.getLogger(__name__)

LABEL_PREFIX = "hoist.dev"
SKIPPED = "SkippedAfterOutage"
# After a transient failure (cluster or registry down), when the observer hands the work out
# again: RETRY_AFTER_S, doubled with each failure in a row, up to RETRY_MAX_S.
RETRY_AFTER_S = 3
RETRY_MAX_S = 60
DEFERRED = "Deferred"
# What `decide` read; a person changing any of it during a reconcile voids that reconcile's record.
SOURCE_SNAPSHOT = ("source_type", "image", "promote_from_id", "binding", "pinned_digest")


@dataclass
class Batch:
    """What the reconciles of one task share.

    - `image_sources`: upstream ImageSource objects already read, by
      (endpoint, namespace, name): a fan-out reads its upstream once.
    - `down_clusters`: clusters found unreachable, by name, with the error:
      the rest of the batch on that cluster fails at once instead of spending
      its retries (and the task's time limit) on the same outage.
    """

    image_sources: dict = field(default_factory=dict)
    down_clusters: dict = field(default_factory=dict)
    # Hoist's record of an upstream's publish, by (upstream id, sequence): siblings in one
    # fan-out all check the same one (an artifact never changes once written).
    artifacts: dict = field(default_factory=dict)

    def renewed(self) -> "Batch":
        """For reconciling again later in the same task: the clusters found down still are;
        what was read is not kept (an upstream may have published since)."""
        return Batch(down_clusters=self.down_clusters)


class Waiting(Exception):
    """Nothing to run yet (the upstream has not published, or nothing has soaked); not an error."""

    def __init__(self, message: str, recheck_at: datetime | None = None):
        super().__init__(message)
        self.recheck_at = recheck_at


@dataclass
class Target:
    """The digest to run, where it comes from, and its place in the publisher's order."""

    digest: str
    image: str  # registry/path@digest, as the source publishes it
    sequence: int  # the publishing resource's artifact sequence; 0 for pins (they never move by themselves)
    source_artifact: Artifact | None
    first_published_at: datetime | None
    reason: str
    # A newer upstream digest still soaking: look again then.
    recheck_at: datetime | None = None


@dataclass
class Outcome:
    changed: bool
    digest: str = ""
    note: str = ""
    health: str = ""


@dataclass
class Plan:
    """What this reconcile must write; everything else in the cluster is already right."""

    image_changed: bool
    config_changed: bool
    full: bool  # the drift sweep (and a repair) re-applies everything, whatever Hoist believes
    fingerprint: str

    @property
    def nothing_to_do(self) -> bool:
        return not (self.image_changed or self.config_changed or self.full)


UNKNOWN = object()  # an argument the caller doesn't know: the callee reads it


@dataclass
class Claim:
    token: str
    started: datetime
    # Given back already, with the record (see record(release_now=...)): release() has nothing to do.
    released: bool = False
    # When the lease was last set (`started`, then each renewal): how old the claim is.
    renewed: datetime | None = None
    # Found taken by another worker while this one waited (renew()): stop before writing anything.
    lost: bool = False


def up_to_date(resource: Resource) -> bool:
    """Healthy, and no promotion waiting for an outcome: an event-driven reconcile can stop here."""
    return resource.phase == Phase.READY and not resource.promotions.filter(status__in=Promotion.OPEN).exists()


# --- claims ------------------------------------------------------------------------------------


def claim(resource_id: int) -> Claim | None:
    """Take the resource for this worker, unless another one holds a live claim."""
    held = _new_claim()
    return held if rows.claim(resource_id, held.token, held.started, _lease_end(held)) else None


def _new_claim() -> Claim:
    return Claim(secrets.token_hex(8), timezone.now())


def _lease_end(held: Claim) -> datetime:
    return held.started + timedelta(seconds=settings.HOIST_RECONCILE_LEASE_S)


def extend(resource_id: int, held: Claim, seconds: float) -> bool:
    """Renew the claim; False if it is no longer this worker's."""
    now = timezone.now()
    if not Resource.objects.filter(pk=resource_id, claim_token=held.token).update(
            claimed_until=now + timedelta(seconds=seconds)):
        return False
    held.renewed = now
    return True


def renew(claims: dict[int, Claim]) -> set[int]:
    """Renew, in one statement, the claims of reconciles waiting for their second step (by
    resource id); the ids of those another worker took meanwhile (their claims are marked
    `lost`: they stop before writing anything)."""
    if not claims:
        return set()
    now = timezone.now()
    tokens = [held.token for held in claims.values()]
    mine = Resource.objects.filter(pk__in=list(claims), claim_token__in=tokens)  # tokens are unique
    lost: set[int] = set()
    if mine.update(claimed_until=now + timedelta(seconds=settings.HOIST_RECONCILE_LEASE_S)) < len(claims):
        lost = set(claims) - set(mine.values_list("pk", flat=True))
    for resource_id, held in claims.items():
        if resource_id in lost:
            held.lost = True
        else:
            held.renewed = now
    return lost


def _older_than(held: Claim, seconds: float) -> bool:
    """Whether the claim's lease was set (taken or renewed) more than `seconds` ago."""
    return (timezone.now() - (held.renewed or held.started)).total_seconds() > seconds


def release(resource_id: int, held: Claim, *, recheck_at: datetime | None = None, done: bool = True,
            backoff_until: datetime | None = None, requeue: bool = True) -> bool:
    """Give the resource back. `done`: desired state as of the claim is reconciled, so a
    dirty mark from before the claim goes; one made since (a change that arrived while
    this reconcile ran) stays, and is reconciled again right away: queued, or, without
    `requeue`, by the caller. True when it changed meanwhile."""
    if held.released:
        return False
    if done and recheck_at is None and backoff_until is None:
        # The usual end, in one statement: nothing changed meanwhile and nothing is scheduled.
        if Resource.objects.filter(pk=resource_id, claim_token=held.token, next_check_at__isnull=True).filter(
                Q(dirty_at__isnull=True) | Q(dirty_at__lte=held.started)).update(
                claimed_until=None, claim_token="", backoff_until=None, failures_in_a_row=0, dirty_at=None):
            return False
    with transaction.atomic():
        row = Resource.objects.select_for_update(no_key=True).filter(pk=resource_id, claim_token=held.token).first()
        if row is None:
            return False  # the lease ran out and another worker took over: it records
        # The next look: the one this reconcile asks for (a soak ending, a retry), or an
        # earlier one still ahead that someone else scheduled (a soak started meanwhile).
        ahead = row.next_check_at if row.next_check_at and row.next_check_at > timezone.now() else None
        fields = {"claimed_until": None, "claim_token": "", "backoff_until": backoff_until,
                  "failures_in_a_row": F("failures_in_a_row") + 1 if backoff_until else 0,
                  "next_check_at": min(filter(None, (recheck_at, ahead)), default=None)}
        changed_since = row.dirty_at is not None and row.dirty_at > held.started
        if done and not changed_since:
            fields["dirty_at"] = None
        Resource.objects.filter(pk=resource_id).update(**fields)
        if changed_since and requeue:
            queue.enqueue_reconcile(resource_id)
    return changed_since


# --- entry points ------------------------------------------------------------------------------


def reconcile_resource(resource_id: int, *, sweep: bool = False, batch: Batch | None = None) -> Outcome | None:
    """Reconcile with in-task retries for transient failures; record every failure.

    After the last attempt a transient failure leaves its promotion queued
    (with the error and the attempt count) and the resource dirty; the
    observer hands it out again a few seconds later (the sweep is the safety
    net). A permanent one marks it failed.
    """
    return _run(_attempts(resource_id, sweep=sweep, batch=batch, in_two=False))


def reconcile_steps(resource_id: int, *, sweep: bool = False, batch: Batch | None = None,
                    again: list | None = None) -> Generator[Claim, None, Outcome | None]:
    """reconcile_resource() in two steps, for the resources of one fan-out chunk
    (promotions.tasks): it yields once the Deployment is applied, and reads the rollout,
    publishes to its own dependants and records when resumed. The worker applies every
    Deployment of its chunk first: the last one reaches its cluster about halfway through
    the chunk's work instead of at its end. What it yields is the claim it holds: while it
    waits, the caller keeps the claim alive (renew()); resumed, it renews the claim itself if
    it is older than half its lease, and stops (LostClaim) if another worker took it. Claims,
    forward-only and the record's compare-and-set are the same as reconcile_resource's; only
    the order of the work changes.

    A change made while the claim was held (a publish while the reconcile waited for its
    second step: a queued task found it claimed and left it) is reconciled again by the
    caller: the id is added to `again`; without `again`, here and now."""
    return _attempts(resource_id, sweep=sweep, batch=batch, in_two=True, again=again)


def _attempts(resource_id: int, *, sweep: bool, batch: Batch | None, in_two: bool,
              again: list | None = None) -> Generator[Claim, None, Outcome | None]:
    """The attempts of reconcile_resource (in one go) and reconcile_steps (`in_two`)."""
    attempts = max(1, settings.HOIST_RECONCILE_ATTEMPTS)
    for attempt in range(1, attempts + 1):
        # In two steps, a change made while this attempt held the resource is the caller's
        # (the id is added); in one go, release() queues it.
        changed = [] if in_two else None
        try:
            outcome = yield from _steps(resource_id, sweep=sweep, batch=batch, in_two=in_two, changed=changed)
        except LostClaim:
            return None  # the worker that took over records
        except (ClusterError, RegistryError) as exc:
            if _gave_up(resource_id, exc, attempt, attempts, batch):
                if changed:
                    queue.enqueue_reconcile(resource_id)
                return None
            continue
        except BaseException:
            if changed:
                queue.enqueue_reconcile(resource_id)
            raise
        if changed and again is not None:
            again.append(resource_id)
        elif changed:
            return reconcile_resource(resource_id, sweep=sweep, batch=batch.renewed() if batch is not None else None)
        return outcome
    return None


def _gave_up(resource_id: int, exc: ClusterError | RegistryError, attempt: int, attempts: int, batch: Batch | None) -> bool:
    """Record a failed attempt; True when it was the last (else after a pause, try again)."""
    skipped = getattr(exc, "reason", "") == SKIPPED
    # Trying again within this task only helps a flaky cluster call. A registry that
    # failed already spent its timeout (its breaker counts it); a call not made at all
    # (breaker open, host busy) can't succeed sooner than its retry_at.
    final = (not exc.retryable or attempt == attempts or skipped or isinstance(exc, RegistryError)
             or getattr(exc, "retry_at", None) is not None)
    record_failure(resource_id, exc, attempt=attempt, final=final)
    if final:
        if getattr(exc, "unreachable", False) and batch is not None and not skipped:
            batch.down_clusters[exc.cluster_name] = exc.message
        return True
    time.sleep(settings.HOIST_RECONCILE_BACKOFF_S * 2 ** (attempt - 1))
    return False


def _run(steps: Generator):
    """Run a generator of steps (_attempts, _apply_steps) to its end; its result."""
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return stop.value


def _steps(resource_id: int, *, sweep: bool, batch: Batch | None, in_two: bool,
           changed: list | None = None) -> Generator[Claim, None, Outcome | None]:
    """One attempt (`batch`: what the reconciles of one task share, see Batch), as steps: with
    `in_two`, a pause once the Deployment is applied (see reconcile_steps); without,
    apply_objects() in one go. `changed`: the caller reconciles
    again a change made while the claim was held (the id is added), instead of the queue."""
    held, loaded = _claim_and_load(resource_id)
    if held is None:
        return None  # another worker holds it; its release sees any change made meanwhile
    done, recheck_at, cluster, backoff_until = False, None, "", None
    try:
        if loaded is None:
            done = True
            return None  # deleted meanwhile: cleanup has its own task
        resource = loaded.resource
        cluster = resource.environment.cluster.name
        metrics.reconcile_attempt(cluster)
        outage = batch.down_clusters.get(resource.environment.cluster.name) if batch is not None else None
        if outage:
            raise ClusterError(f"{outage} (not retried again in this batch)", retryable=True, reason=SKIPPED)
        if resource.kind != Kind.DEPLOYMENT:
            set_phase(resource.pk, Phase.PENDING, f"{resource.get_kind_display()} resources are not run in clusters yet; only deployments are.")
            done = True
            return None
        with _cluster_gate(resource.environment.cluster) as gate, ClusterClient.for_cluster(resource.environment.cluster) as kube:
            long_call = resource.source_type == SourceType.IMAGE and "@" not in resource.image
            if long_call:
                # Deciding may resolve the tag through the registry: keep the claim for as long as
                # that call may take, or the observer would hand the resource to a second worker.
                extend(resource.pk, held, settings.HOIST_REGISTRY_DEADLINE_S + 5)
            try:
                target = decide(resource, kube, batch)
            except Waiting as waiting:
                if not (sweep and resource.current_image):
                    set_phase(resource.pk, Phase.WAITING, str(waiting))
                    done, recheck_at = True, waiting.recheck_at
                    return None
                # A repair puts back what ran, even when the upstream can't say what is next
                # (its ImageSource went with the cluster that came back empty).
                target, recheck_at = _what_runs(resource), waiting.recheck_at
            recheck_at = target.recheck_at or recheck_at
            if not is_forward(resource, target) or target.digest == resource.failed_digest:
                if not (sweep and resource.current_image):
                    done = True
                    note = "stale candidate ignored" if not is_forward(resource, target) else "failed digest not retried"
                    return Outcome(changed=False, digest=resource.current_digest, note=note)
                target = _what_runs(resource)
            held_by = governance.hold(resource, target.digest, target.reason)
            if held_by is not None:  # a freeze, or approvals still to come
                if not (sweep and resource.current_image):
                    set_phase(resource.pk, Phase.WAITING, held_by.message)
                    done, recheck_at = True, held_by.recheck_at
                    return None
                target = _what_runs(resource)  # the sweep still repairs what runs
            if loaded.has_queued:
                _mark_applying(resource, target)
            if _crosses_clusters(resource):
                extend(resource.pk, held, settings.HOIST_MIRROR_DEADLINE_S + 60)
                long_call = True
            image = make_pullable(resource, target)
            if long_call or _older_than(held, settings.HOIST_RECONCILE_LEASE_S / 2):
                extend(resource.pk, held, settings.HOIST_RECONCILE_LEASE_S)  # renewed (and back from a long call's)
            drift = observe_drift(kube, resource) if sweep else None
            objects = desired_objects(resource, image, target.digest, env_vars=None if loaded.has_env_vars else [])
            fingerprint = config_hash(objects)
            plan = Plan(
                image_changed=image != resource.current_image,
                config_changed=fingerprint != resource.config_hash,
                full=sweep,
                fingerprint=fingerprint,
            )
            if plan.nothing_to_do and up_to_date(resource):
                if target.sequence > resource.applied_seq:
                    # Same image from a newer publish (e.g. a new upstream with the same digest):
                    # remember its place so older candidates stay refused.
                    Resource.objects.filter(pk=resource.pk).update(applied_seq=target.sequence)
                done = True
                return Outcome(changed=False, digest=target.digest, note="up to date")
            if in_two and not gate.probing:
                # (A probe of a cluster whose breaker opened runs to its end: the chunk's next
                # reconciles wait for its verdict.)
                health = yield from _apply_steps(kube, resource, objects, target, image, plan, held,
                                                 latest_artifact=loaded.latest_artifact, pause=True)
            else:
                health = apply_objects(kube, resource, objects, target, image, plan, held,
                                       latest_artifact=loaded.latest_artifact)
            # Nothing to look at later: the record gives the claim back in its own transaction.
            outcome = record(resource, held, target, image, drift, health, release_now=recheck_at is None)
            if outcome is None and not Resource.objects.filter(pk=resource.pk).exists():
                _clean_up_after(resource)  # deleted while this reconcile applied: take it out again
            done = outcome is not None
            return outcome
    except (ClusterError, RegistryError) as exc:
        if cluster and not isinstance(exc, LostClaim):
            metrics.reconcile_failure(cluster, exc.retryable)
        if exc.retryable:
            # Left dirty: handed out again after a pause that grows while the failures go on.
            recheck_at = backoff_until = _retry_at(resource_id, exc)
        else:
            done = True  # a 422, a digest the registry lacks: a person has to change something
        raise
    except Exception:
        recheck_at = timezone.now() + timedelta(seconds=RETRY_AFTER_S * 10)  # a bug or the database: not in a loop
        raise
    finally:
        if release(resource_id, held, recheck_at=recheck_at, done=done, backoff_until=backoff_until,
                   requeue=changed is None) and changed is not None:
            changed.append(resource_id)


def _claim_and_load(resource_id: int) -> tuple[Claim | None, rows.Loaded | None]:
    """claim(), and the resource with what a reconcile reads of its environment, cluster,
    project and upstream, in one statement where the database allows (promotions.rows), which
    also says whether it has env vars, queued promotions and freeze windows: each "no" is a
    query not made. (None, None) when another worker holds it."""
    held = _new_claim()
    taken, loaded = rows.claim_and_load(resource_id, held.token, held.started, _lease_end(held))
    if not taken:
        return None, None
    if loaded is not None and not loaded.has_freeze_windows:
        rows.known_empty(loaded.resource.environment, "freeze_windows")  # what governance.hold reads
    return held, loaded


def _retry_at(resource_id: int, exc: Exception) -> datetime:
    """When to try again after a transient failure: exponential in the failures so far, and
    never before the moment a breaker or a busy host said (`retry_at`)."""
    now = timezone.now()
    failures = Resource.objects.filter(pk=resource_id).values_list("failures_in_a_row", flat=True).first() or 0
    delay = min(RETRY_MAX_S, RETRY_AFTER_S * 2 ** min(failures, 6))
    told = getattr(exc, "retry_at", None)
    if told is not None:
        return max(told, now + timedelta(seconds=0.5))
    return now + timedelta(seconds=delay)


def _cluster_transient(exc: BaseException) -> bool | None:
    """For a cluster's breaker: no answer or a 5xx counts against it; a 4xx is an answer;
    anything else (a registry error, a call not made) says nothing about the cluster."""
    if not isinstance(exc, ClusterError) or isinstance(exc, LostClaim) or exc.reason in (SKIPPED, DEFERRED):
        return None
    return exc.retryable and (exc.unreachable or (exc.status or 0) >= 500 or exc.status is None)


def gate_key(cluster: Cluster) -> str:
    return f"cluster:{cluster.pk}:{kube_fingerprint(cluster)[:12]}"


@contextmanager
def _cluster_gate(cluster: Cluster) -> Iterator[guard._State]:
    """The cluster's circuit breaker around one reconcile (no concurrency limit: reconciles
    on one cluster are the normal load, and a dead cluster opens its breaker in a few calls).
    Keyed by how Hoist reaches it too: fixing a cluster's URL or token in the admin is tried
    at once, not after the old endpoint's cooldown."""
    try:
        with guard.passage(gate_key(cluster), label=f"cluster {cluster.name}", lease_s=60,
                           transient=_cluster_transient) as state:
            yield state
    except guard.Closed as closed:
        error = ClusterError(closed.message, retryable=True, reason=DEFERRED, unreachable=True)
        error.cluster_name = cluster.name
        error.retry_at = closed.retry_at
        raise error from None


def _what_runs(resource: Resource) -> Target:
    """What the resource was last applied with, as a target (a repair re-applies it)."""
    return Target(resource.current_digest, resource.current_image, resource.applied_seq, None, None,
                  Promotion.Reason.DRIFT)


def _clean_up_after(resource: Resource) -> None:
    env = resource.environment
    queue.enqueue_cleanup(env.cluster_id, env.namespace, env.project.slug, env.slug, resource.name)


# --- step 1: decide ----------------------------------------------------------------------------


def decide(resource: Resource, kube: ClusterClient, batch: Batch | None = None) -> Target:
    if resource.source_type == SourceType.IMAGE:
        return _rollback_if_failed(resource, _decide_own(resource))
    upstream = resource.promote_from
    if resource.binding == Binding.PIN_DIGEST:
        source_artifact = upstream.artifacts.filter(digest=resource.pinned_digest).order_by("-sequence").first()
        repository = source_artifact.repository if source_artifact else _repository_of(upstream)
        return _rollback_if_failed(resource, Target(
            digest=resource.pinned_digest, image=f"{repository}@{resource.pinned_digest}", sequence=0,
            source_artifact=source_artifact,
            first_published_at=source_artifact.first_published_at if source_artifact else None,
            reason=Promotion.Reason.PIN_EDIT,
        ))
    if _same_cluster(resource, upstream):
        return _rollback_if_failed(resource, _decide_from_image_source(resource, upstream, kube, batch))
    return _rollback_if_failed(resource, _decide_from_artifacts(resource, upstream))


def _rollback_if_failed(resource: Resource, target: Target) -> Target:
    """A digest whose rollout failed is not applied again by itself: with rollback on, the
    last healthy digest runs instead (recorded as a rollback); otherwise nothing moves.
    Something newer (another digest) goes ahead as usual."""
    if not resource.failed_digest or target.digest != resource.failed_digest:
        return target
    if resource.rollback_on_failure and resource.healthy_digest and resource.healthy_digest != target.digest:
        artifact = Artifact.objects.filter(
            Q(resource=resource) | Q(resource_id=resource.promote_from_id), digest=resource.healthy_digest,
        ).order_by("-sequence").first()
        # Where it ran from: across clusters that is the central mirror path (the same
        # for every digest of this upstream); else the artifact's own repository.
        repository = (resource.current_image.rpartition("@")[0] if _crosses_clusters(resource) or artifact is None
                      else artifact.repository)
        return Target(
            digest=resource.healthy_digest, image=f"{repository}@{resource.healthy_digest}",
            sequence=resource.applied_seq if target.sequence else 0, source_artifact=artifact,
            first_published_at=None, reason=Promotion.Reason.ROLLBACK, recheck_at=target.recheck_at,
        )
    return target  # a reconcile leaves a failed digest alone (the sweep re-applies it only on drift)


def _decide_own(resource: Resource) -> Target:
    latest = latest_artifact(resource)
    if latest is None:
        latest = _resolve_tag(resource)
    return Target(latest.digest, latest.reference, latest.sequence, latest, latest.first_published_at, Promotion.Reason.PUBLISH)


def _resolve_tag(resource: Resource) -> Artifact:
    """An image source given by tag: resolve it once, and record it as the first publish."""
    ref = parse_reference(resource.image)
    digest = mirror.resolve(resource.image)  # network: outside any transaction
    with transaction.atomic():
        locked = Resource.objects.select_for_update(no_key=True).get(pk=resource.pk)
        already = latest_artifact(locked)
        if already is not None:
            return already  # published meanwhile (a webhook, another worker)
        locked.artifact_seq += 1
        Resource.objects.filter(pk=resource.pk).update(artifact_seq=locked.artifact_seq)
        resource.artifact_seq = locked.artifact_seq
        return Artifact.objects.create(
            resource=resource, sequence=locked.artifact_seq, repository=ref.name, digest=digest, tag=ref.tag or "latest",
            origin=Artifact.Origin.RESOLVE, first_published_at=timezone.now(),
        )


def _decide_from_artifacts(resource: Resource, upstream: Resource) -> Target:
    """Another cluster: Hoist's own records of the upstream's publishes and healthy rollouts."""
    if resource.follow == Follow.PUBLISHED:
        latest = latest_artifact(upstream)
        if latest is None:
            raise Waiting(f"Waiting for {upstream} to publish an image.")
        return Target(latest.digest, latest.reference, latest.sequence, latest, latest.first_published_at,
                      Promotion.Reason.TRACK_LATEST)
    healthy = upstream.artifacts.filter(sequence__gt=upstream.artifact_floor, healthy_at__isnull=False).order_by("-sequence")
    candidates = [(a, a.healthy_at) for a in healthy[:rollout.HISTORY]]
    chosen, recheck_at = _soaked(resource, candidates, upstream)
    return Target(chosen.digest, chosen.reference, chosen.sequence, chosen, chosen.first_published_at,
                  Promotion.Reason.TRACK_LATEST, recheck_at=recheck_at)


def _soaked(resource: Resource, candidates: list, upstream: Resource):
    """The newest candidate that has run healthy for the soak time, and when to look again
    for a newer one still soaking. A newer build never resets an older one's soak: each
    digest's clock starts when it became healthy."""
    if not candidates:
        raise Waiting(f"Waiting for {upstream} to run a digest healthy.")
    soak = timedelta(seconds=resource.soak_seconds)
    now = timezone.now()
    recheck_at = None
    for candidate, healthy_at in candidates:  # newest first
        if healthy_at + soak <= now:
            return candidate, recheck_at
        recheck_at = healthy_at + soak if recheck_at is None else min(recheck_at, healthy_at + soak)
    raise Waiting(f"Waiting for a digest of {upstream} to run healthy for {resource.soak_seconds} s "
                  f"(next at {recheck_at:%H:%M:%S}).", recheck_at=recheck_at)


def _decide_from_image_source(resource: Resource, upstream: Resource, kube: ClusterClient, batch: Batch | None) -> Target:
    """Same cluster: the upstream's ImageSource says what it runs healthy and what it
    published (no registry round-trip).

    Within one batch the read is shared: a batch lasts a second or so, and a
    change during it queues another batch that moves everyone forward again.
    """
    key = (kube.endpoint, upstream.environment.namespace, upstream.name)
    if batch is not None and key in batch.image_sources:
        obj = batch.image_sources[key]
    else:
        obj = kube.read_image_source(upstream.environment.namespace, upstream.name)
        if batch is not None:
            batch.image_sources[key] = obj
    status = (obj or {}).get("status") or {}
    where = f"ImageSource {upstream.environment.namespace}/{upstream.name} on cluster {upstream.environment.cluster}"
    if resource.follow == Follow.PUBLISHED:
        latest = status.get("publishedArtifact") or status.get("latestArtifact")
        if not latest:
            raise Waiting(f"Waiting for {upstream} to publish: no {where} with a published artifact.")
        return _target_from_status(upstream, latest, recheck_at=None, batch=batch)
    if resource.soak_seconds == 0:
        latest = status.get("latestArtifact")
        if not latest:
            raise Waiting(f"Waiting for {upstream} to run a digest healthy: no {where} with a healthy artifact.")
        return _target_from_status(upstream, latest, recheck_at=None, batch=batch)
    entries = status.get("healthyArtifacts") or ([status["latestArtifact"]] if status.get("latestArtifact") else [])
    candidates = []
    for entry in entries:
        healthy_at = _parse_time(entry.get("healthyAt")) if isinstance(entry, dict) else None
        if healthy_at is not None:
            candidates.append((entry, healthy_at))
    if not candidates:
        raise Waiting(f"Waiting for {upstream} to run a digest healthy: no {where} with a healthy artifact.")
    chosen, recheck_at = _soaked(resource, candidates, upstream)
    return _target_from_status(upstream, chosen, recheck_at=recheck_at, batch=batch)


def _target_from_status(upstream: Resource, latest: dict, *, recheck_at, batch: Batch | None = None) -> Target:
    source_artifact = _check_published(upstream, latest, batch)
    first = _parse_time(latest.get("firstPublishedAt") or latest.get("publishedAt"))
    return Target(
        digest=latest["digest"], image=latest["image"], sequence=int(latest["sequence"]),
        source_artifact=source_artifact, first_published_at=first,
        reason=Promotion.Reason.TRACK_LATEST, recheck_at=recheck_at,
    )


def _parse_time(value) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _check_published(upstream: Resource, latest: dict, batch: Batch | None = None) -> Artifact | None:
    """What an upstream's ImageSource says it publishes must be a digest reference that
    agrees with itself and with Hoist's own record: anyone able to write that status
    must not be able to push a tag, or someone else's digest, downstream."""
    try:
        ref = parse_reference(str(latest.get("image", "")))
        sequence = int(latest.get("sequence", 0))
    except (ValueError, TypeError):
        ref, sequence = None, 0
    if ref is None or not ref.digest or ref.digest != latest.get("digest") or sequence < 1:
        raise ClusterError(
            f"ImageSource {upstream.environment.namespace}/{upstream.name} has a malformed latestArtifact "
            f"({str(latest)[:200]}); refusing to promote from it", retryable=False)
    key = (upstream.pk, sequence)
    if batch is not None and key in batch.artifacts:
        recorded = batch.artifacts[key]
    else:
        recorded = upstream.artifacts.filter(sequence=sequence).order_by().first()
        if batch is not None and recorded is not None:
            batch.artifacts[key] = recorded
    if recorded is not None and recorded.digest != ref.digest:
        raise ClusterError(
            f"ImageSource {upstream.environment.namespace}/{upstream.name} says publish #{sequence} is {ref.digest}, "
            f"but Hoist recorded {recorded.digest}; refusing to promote from it", retryable=False)
    return recorded


def _same_cluster(resource: Resource, upstream: Resource) -> bool:
    return resource.environment.cluster_id == upstream.environment.cluster_id


def _crosses_clusters(resource: Resource) -> bool:
    return resource.source_type == SourceType.PROMOTE and not _same_cluster(resource, resource.promote_from)


def _repository_of(resource: Resource) -> str:
    """Where `resource`'s images live: its latest artifact's repository, else its source's."""
    seen = set()
    node = resource
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        latest = node.artifacts.order_by("-sequence").first()
        if latest is not None:
            return latest.repository
        if node.source_type == SourceType.IMAGE:
            return parse_reference(node.image).name
        node = node.promote_from
    raise Waiting(f"{resource} has no image repository yet.")


def is_forward(resource: Resource, target: Target) -> bool:
    """A candidate older than what runs is a late or retried task: ignore it.

    Pins carry sequence 0 and always apply (only a person changes them).
    """
    if target.sequence == 0:
        return True
    return target.sequence >= resource.applied_seq


def _mark_applying(resource: Resource, target: Target) -> None:
    Promotion.objects.filter(resource=resource, status=Promotion.Status.QUEUED, to_digest=target.digest).update(
        status=Promotion.Status.APPLYING)


# --- step 2: make pullable ---------------------------------------------------------------------


def make_pullable(resource: Resource, target: Target) -> str:
    if resource.source_type == SourceType.IMAGE or _same_cluster(resource, resource.promote_from):
        return target.image
    # Across clusters: present and verified in the central registry before anything is applied.
    return mirror.mirror(target.image, mirror.central_repository(resource, resource.promote_from))


# --- step 3: apply -----------------------------------------------------------------------------


def labels_for(resource: Resource) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": resource.name,
        "app.kubernetes.io/managed-by": "hoist",
        f"{LABEL_PREFIX}/project": resource.environment.project.slug,
        f"{LABEL_PREFIX}/environment": resource.environment.slug,
        f"{LABEL_PREFIX}/resource": resource.name,
    }


def selector_for(project: str, environment: str, resource: str) -> dict[str, str]:
    return {f"{LABEL_PREFIX}/project": project, f"{LABEL_PREFIX}/environment": environment, f"{LABEL_PREFIX}/resource": resource}


def secret_name(resource: Resource) -> str:
    return f"{resource.name}-env"


def desired_objects(resource: Resource, image: str, digest: str, *, env_vars: list | None = None) -> dict[str, dict | None]:
    """Every object the resource owns in its cluster; None means "must not exist".
    `env_vars`: the resource's, when the caller knows them already (else they are read)."""
    namespace = resource.environment.namespace
    labels = labels_for(resource)
    selector = selector_for(resource.environment.project.slug, resource.environment.slug, resource.name)
    meta = {"name": resource.name, "namespace": namespace, "labels": labels}
    env_vars = list(resource.env_vars.order_by("name")) if env_vars is None else env_vars
    secret_data = {var.name: var.value for var in env_vars if var.secret}
    if resource.database_url:
        secret_data["DATABASE_URL"] = resource.database_url
    env = []
    for var in env_vars:
        if var.secret:
            env.append({"name": var.name, "valueFrom": {"secretKeyRef": {"name": secret_name(resource), "key": var.name}}})
        else:
            env.append({"name": var.name, "value": var.value})
    if resource.database_url:
        env.append({"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": secret_name(resource), "key": "DATABASE_URL"}}})

    container = {"name": resource.name, "image": image}
    if resource.ports:
        container["ports"] = [{"name": p["name"], "containerPort": p["port"], "protocol": p["protocol"]} for p in resource.ports]
    if env:
        container["env"] = env
    pod_spec = {"containers": [container]}
    if resource.runtime:
        pod_spec["runtimeClassName"] = resource.runtime
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {**meta, "annotations": {f"{LABEL_PREFIX}/digest": digest}},
        "spec": {
            "replicas": resource.replicas,
            "progressDeadlineSeconds": resource.progress_deadline_seconds,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    secret = None
    if secret_data:
        # stringData: the API server encodes it; values never appear in the Deployment.
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, "name": secret_name(resource)},
                  "type": "Opaque", "stringData": secret_data}
    service = None
    if resource.ports:
        service = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
            "selector": selector,
            "ports": [{"name": p["name"], "port": p["port"], "targetPort": p["port"], "protocol": p["protocol"]} for p in resource.ports],
        }}
    ingress = None
    http_port = next((p for p in resource.ports if p["protocol"] == "TCP"), None)
    if resource.ingress_host and http_port:
        ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": {"rules": [{
            "host": resource.ingress_host,
            "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": resource.name, "port": {"number": http_port["port"]}}}}]},
        }]}}
    source = {"image": image, "digest": digest, "binding": "image" if resource.source_type == SourceType.IMAGE else resource.binding}
    if resource.promote_from_id:
        upstream = resource.promote_from
        source["sourceRef"] = {
            "project": resource.environment.project.slug, "environment": upstream.environment.slug,
            "namespace": upstream.environment.namespace, "name": upstream.name,
            "cluster": upstream.environment.cluster.slug,
        }
    image_source = {"apiVersion": IMAGESOURCE_API, "kind": "ImageSource", "metadata": meta, "spec": source}
    return {"Secret": secret, "Deployment": deployment, "Service": service, "Ingress": ingress, "ImageSource": image_source}


def config_hash(objects: dict[str, dict | None]) -> str:
    """Fingerprint of everything but the image, to skip re-applying unchanged objects.

    Keyed with SECRET_KEY: the objects include secret values, and a plain hash
    in the database would let low-entropy secrets be guessed offline.
    """
    stripped = {kind: obj for kind, obj in objects.items() if kind not in ("Deployment", "ImageSource")}
    deployment = json.loads(json.dumps(objects["Deployment"]))
    deployment["spec"]["template"]["spec"]["containers"][0].pop("image")
    deployment["metadata"].pop("annotations")
    stripped["Deployment"] = deployment
    stripped["ImageSource"] = {k: v for k, v in objects["ImageSource"]["spec"].items() if k not in ("image", "digest")}
    return hmac.new(settings.SECRET_KEY.encode(), json.dumps(stripped, sort_keys=True).encode(), hashlib.sha256).hexdigest()


API_VERSIONS = {"Secret": "v1", "Deployment": "apps/v1", "Service": "v1", "Ingress": "networking.k8s.io/v1"}


class LostClaim(ClusterError):
    """Another worker took the resource over (this one's lease ran out): stop, it records."""

    def __init__(self):
        super().__init__("the claim on this resource ran out and another worker took over", retryable=False)


def apply_objects(kube: ClusterClient, resource: Resource, objects: dict, target: Target, image: str,
                  plan: Plan, held: Claim | None = None, *, latest_artifact=UNKNOWN) -> rollout.Health:
    """Apply what the plan says changed, read the rollout, then publish to dependants (see _apply_steps)."""
    return _run(_apply_steps(kube, resource, objects, target, image, plan, held, latest_artifact=latest_artifact))


def _apply_steps(kube: ClusterClient, resource: Resource, objects: dict, target: Target, image: str,
                 plan: Plan, held: Claim | None = None, *, latest_artifact=UNKNOWN,
                 pause: bool = False) -> Generator[Claim, None, rollout.Health]:
    """Apply what the plan says changed, read the rollout, then publish to dependants.

    The Deployment is applied whenever the image or config changed; Secret,
    Service and Ingress when the config changed (or Hoist has no record of
    writing them, see promotions.applied); the drift sweep and a repair
    (`plan.full`) apply everything. The ImageSource comes last: its status
    says what this resource published and what it runs healthy, so it is
    written once the rollout has been read.
    """
    config = plan.config_changed or plan.full
    # What each write returned (see promotions.applied); recorded with the apply.
    versions = dict(resource.applied_versions or {})
    for kind in ("Secret", "Deployment", "Service", "Ingress"):
        # An object Hoist wants but has no record of writing (it was applied before Hoist kept
        # records) is applied too: from then on the observer can tell others' writes to it.
        if kind != "Deployment" and not config and (objects[kind] is None or kind in versions):
            continue
        obj = objects[kind]
        if obj is None:
            name = secret_name(resource) if kind == "Secret" else resource.name
            kube.delete(API_VERSIONS[kind], kind, resource.environment.namespace, name)
            versions.pop(kind, None)
        else:
            versions[kind] = applied.marker(kind, _apply_in_namespace(kube, resource, obj))
        if kind == "Deployment" and pause:
            # The caller applies its other resources' Deployments first (reconcile_steps),
            # renewing this claim meanwhile (renew()).
            yield held
            if held is not None and (held.lost or (_older_than(held, settings.HOIST_RECONCILE_LEASE_S / 2)
                                                   and not extend(resource.pk, held, settings.HOIST_RECONCILE_LEASE_S))):
                raise LostClaim()  # it waited too long: whoever took it over finishes
    health = rollout.assess(kube.get("apps/v1", "Deployment", resource.environment.namespace, resource.name), resource.name)
    runs = health.state == rollout.HEALTHY and health.image == image
    now = timezone.now()
    artifact = own_artifact(resource, target, image, plan, held, healthy_at=now if runs else None,
                            latest=latest_artifact)
    if runs and not (artifact is not None and artifact.healthy_at == now):
        # It runs: what same-cluster dependants that follow "healthy" may take now (an
        # artifact this apply just published was written healthy already).
        Artifact.objects.filter(resource=resource, digest=target.digest, healthy_at__isnull=True).update(healthy_at=now)
    versions["ImageSource"] = applied.marker("ImageSource", _apply_image_source(kube, resource, objects["ImageSource"], image, target.digest))
    resource.config_hash = plan.fingerprint
    resource.applied_versions = versions
    return health


def _apply_in_namespace(kube: ClusterClient, resource: Resource, obj: dict, subresource: str = "") -> dict:
    """Apply; create the namespace (or reinstall the CRD) once if the cluster says it is missing."""
    try:
        return kube.apply(obj, subresource=subresource)
    except ClusterError as exc:
        if exc.status != 404:
            raise
        if obj["kind"] == "ImageSource":
            kube.reinstall_crd()
        kube.ensure_namespace(resource.environment.namespace, {"app.kubernetes.io/managed-by": "hoist",
                                                                f"{LABEL_PREFIX}/project": resource.environment.project.slug})
        try:
            return kube.apply(obj, subresource=subresource)
        except ClusterError as again:
            if again.status == 404 and obj["kind"] == "ImageSource":
                # A CRD just created is served a moment later on a real API server.
                again.retryable = True
            raise


def _apply_image_source(kube: ClusterClient, resource: Resource, image_source: dict, image: str, digest: str) -> dict:
    """Apply the ImageSource and write its status; returns the object as the status write left it."""
    kube.ensure_crd()
    written = _apply_in_namespace(kube, resource, image_source)
    return publish_status(kube, resource, image, digest, generation=(written or {}).get("metadata", {}).get("generation", 1))


def publish_status(kube: ClusterClient, resource: Resource, image: str, digest: str, *, generation: int | None = None) -> dict:
    """Write the ImageSource status from Hoist's records (what it published, what runs healthy);
    returns the object as stored.

    The whole status every time: server-side apply removes fields Hoist owned
    and left out.
    """
    status = rollout.image_source_status(resource, image, digest)
    if generation is not None:
        status["observedGeneration"] = generation
    meta = {"name": resource.name, "namespace": resource.environment.namespace}
    return kube.apply({"apiVersion": IMAGESOURCE_API, "kind": "ImageSource", "metadata": meta, "status": status},
                      subresource="status") or {}


def observe_drift(kube: ClusterClient, resource: Resource) -> str | None:
    """The image the cluster actually runs, when it differs from what Hoist applied."""
    if not resource.current_image:
        return None
    deployment = kube.get("apps/v1", "Deployment", resource.environment.namespace, resource.name)
    if deployment is None:
        return "(deleted)"
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    running = next((c.get("image", "") for c in containers if c.get("name") == resource.name), "")
    return running if running != resource.current_image else None


# --- step 4: record ----------------------------------------------------------------------------


def own_artifact(resource: Resource, target: Target, image: str, plan: Plan, held: Claim | None = None, *,
                 healthy_at: datetime | None = None, latest=UNKNOWN) -> Artifact | None:
    """What this resource publishes to its own dependants.

    An image source publishes its own artifacts; a promoted resource
    re-publishes what it applies (so dev → staging → prod follows what each
    hop actually runs), keeping the first publish time for latency figures.
    `healthy_at`: the rollout was read healthy then; a new artifact is written so.
    `latest`: the (id, digest) of the resource's own newest artifact (or None), when the caller
    read it under this claim: only its holder publishes in a resource's order.
    """
    if resource.source_type == SourceType.IMAGE:
        return target.source_artifact
    if latest is UNKNOWN:
        latest = next(iter(resource.artifacts.order_by("-sequence")[:1]), None)
    elif latest is not None and latest[1] == target.digest:
        latest = next(iter(resource.artifacts.order_by("-sequence")[:1]), None)  # a retry: the row itself
    else:
        latest = None  # none yet, or another digest: this apply publishes anew
    if latest is not None and latest.digest == target.digest:
        return latest  # a config change, a repair, or a retry of this very apply
    artifact = Artifact(
        resource=resource, repository=parse_reference(image).name, digest=target.digest,
        origin=Artifact.Origin.PROMOTION, upstream=target.source_artifact,
        first_published_at=target.first_published_at or timezone.now(), healthy_at=healthy_at,
    )
    # Its place in the resource's order, taken with the insert (promotions.rows.publish).
    if not rows.publish(artifact, held.token if held is not None else None):
        raise LostClaim()  # a publish in this resource's order must come from its holder
    resource.artifact_seq = artifact.sequence
    return artifact


def record(resource: Resource, held: Claim, target: Target, image: str, drift: str | None,
           health: rollout.Health, *, release_now: bool = False) -> Outcome | None:
    """Record the apply, compare-and-set: only while the claim is still this worker's, and
    never behind what the resource already runs. None when it was not recorded.

    The rollout read right after the apply is recorded in the same UPDATE of the row
    (rollout.record's `pending`); when it runs healthy already, the promotions are written
    healthy at once. `release_now`: nothing is to be looked at later, so the claim is given
    back in this same UPDATE when nothing changed meanwhile (else release() does it).
    """
    now = timezone.now()
    runs = health.state == rollout.HEALTHY and health.image == image  # what rollout.record will judge healthy
    released = False
    with transaction.atomic():
        # FOR NO KEY UPDATE, not FOR UPDATE: a dependant recording at the same time checks its
        # promote_from key against this row at commit (FOR KEY SHARE, PostgreSQL's foreign-key
        # check), while this transaction marks that dependant dirty: with FOR UPDATE the two
        # waited on each other (a deadlock, seen in the fan-out benchmark).
        row = rows.lock(resource.pk)
        locked = row.resource if row is not None else None
        if locked is None or locked.claim_token != held.token:
            log.warning("reconcile of %s lost its claim before recording; the worker that took over records", resource)
            return None
        if any(getattr(locked, f) != getattr(resource, f) for f in SOURCE_SNAPSHOT):
            # A person changed the source while this ran (claims are not row locks): what was
            # decided no longer holds. Their change marked it dirty: it is reconciled again.
            return None
        if target.sequence and target.sequence < locked.applied_seq:
            return None
        previous = locked.current_digest
        changed = previous != target.digest
        open_ = list(locked.promotions.filter(status__in=Promotion.OPEN).order_by("queued_at", "id")) if row.has_open else []
        latency = (now - target.first_published_at).total_seconds() if target.first_published_at else None
        matched = [p for p in open_ if p.to_digest == target.digest]
        for promotion in matched:
            update_fields = []
            if promotion.status != Promotion.Status.ROLLING_OUT:
                promotion.status, promotion.applied_at, promotion.latency_s = Promotion.Status.ROLLING_OUT, now, latency
                promotion.attempts += 1
                update_fields = ["status", "applied_at", "latency_s", "attempts"]
            if runs:  # rolling out and healthy in one write
                update_fields = list(dict.fromkeys(update_fields + rollout.mark_healthy(promotion, now)))
            if update_fields:
                promotion.save(update_fields=update_fields)
        # Older requests this apply overtakes (a newer publish, a re-edited pin, a rollback).
        stale = [p.pk for p in open_ if p not in matched]
        if stale:
            Promotion.objects.filter(pk__in=stale).update(status=Promotion.Status.SUPERSEDED)
        recorded_promotion = matched[-1] if matched else None
        created = None
        if drift is not None:
            created = Promotion(
                resource=locked, from_digest=drift.rpartition("@")[2] if "@" in drift else "", to_digest=target.digest,
                reason=Promotion.Reason.DRIFT, status=Promotion.Status.ROLLING_OUT, applied_at=now, attempts=1,
                actor_label=f"drift repair: cluster ran {drift}", artifact=target.source_artifact,
            )
        elif changed and (not matched or target.reason == Promotion.Reason.ROLLBACK):
            created = Promotion(
                resource=locked, from_digest=previous, to_digest=target.digest, reason=target.reason,
                status=Promotion.Status.ROLLING_OUT, applied_at=now, latency_s=latency, attempts=1,
                artifact=target.source_artifact,
                actor_label=f"rollback: {previous[:19]}… failed" if target.reason == Promotion.Reason.ROLLBACK else "Hoist",
            )
        if created is not None:
            if runs:
                rollout.mark_healthy(created, now)
            rows.insert(created)
            recorded_promotion = created
            if drift is None and target.reason == Promotion.Reason.ROLLBACK:  # the project's webhooks hear of it after commit
                notifications.promotion_event(resource, "promotion.rolled_back", target.digest,
                                              promotion=recorded_promotion, from_digest=previous)
        fields = {"current_digest": target.digest, "current_image": image, "reconciled_at": now,
                  "config_hash": resource.config_hash, "applied_versions": resource.applied_versions}
        if changed or locked.phase != Phase.READY or locked.healthy_digest != target.digest:
            fields.update(phase=Phase.PROGRESSING, message="rolling out")  # else: still healthy (a sweep, a config change)
        if target.sequence:
            fields["applied_seq"] = target.sequence
        if target.reason == Promotion.Reason.ROLLBACK or changed:
            fields.update(rollout_ready=0, rollout_total=0)
        if release_now and locked.next_check_at is None and (locked.dirty_at is None or locked.dirty_at <= held.started):
            # release()'s usual end, in this UPDATE: nothing changed since the claim, nothing scheduled.
            fields.update(claimed_until=None, claim_token="", backoff_until=None, failures_in_a_row=0, dirty_at=None)
            released = True
        for name, value in fields.items():
            setattr(resource, name, value)
            setattr(locked, name, value)
        locked.environment = resource.environment  # loaded already: its name is in every log line
        # Writes `fields` with what the rollout says, in one UPDATE.
        recorded = rollout.record(resource.pk, health, claim_token=held.token, locked=locked, pending=fields,
                                  promotions_settled=runs, promotion=created, announce=row.hooked)
        # Dependants that follow what just happened, queued on commit with this record.
        if changed or recorded.became == rollout.HEALTHY:
            if row.followed:  # someone tracks it (read with the lock: no query for the many that nobody follows)
                rollout.fan_out(resource, published=changed, healthy=recorded.became == rollout.HEALTHY)
            queue.enqueue_keep(resource.pk, image)  # keep tags: what it runs now, and its rollback candidates
    held.released = released  # committed: release() has nothing left to do
    note = "newly healthy" if recorded.became == rollout.HEALTHY else ""
    if changed or note or drift is not None:
        log.info("applied %s to %s (%s)", target.digest[:19], resource, health.summary,
                 extra={"resource": str(resource), "promotion": recorded_promotion.pk if recorded_promotion else None, "digest": target.digest,
                        "previous_digest": previous, "reason": target.reason, "rollout": health.state})
    return Outcome(changed=changed, digest=target.digest, health=health.state, note=note)


def set_phase(resource_id: int, phase: str, message: str) -> None:
    Resource.objects.filter(pk=resource_id).update(phase=phase, message=message[:2000], reconciled_at=timezone.now())


def record_failure(resource_id: int, exc: Exception, *, attempt: int, final: bool) -> None:
    """Show the failure on the resource and its pending promotions; nothing else changes."""
    retryable = getattr(exc, "retryable", False)
    message = str(exc)[:2000]
    pending_states = (Promotion.Status.QUEUED, Promotion.Status.APPLYING)
    with transaction.atomic():
        pending = Promotion.objects.filter(resource_id=resource_id, status__in=pending_states)
        if final and not retryable:
            pending.update(status=Promotion.Status.FAILED, error=message)
            set_phase(resource_id, Phase.FAILED, message)
        else:
            for promotion in pending:
                promotion.attempts += 1
                promotion.error = message + ("" if not final else " (will retry in a few seconds)")
                promotion.status = Promotion.Status.QUEUED
                promotion.save(update_fields=["attempts", "error", "status"])
            note = f"{'Retrying' if not final else 'Will retry'} after attempt {attempt}: {message}"
            if final:
                set_phase(resource_id, Phase.FAILED, note)
            else:  # what runs is unchanged: only say why nothing moved yet
                Resource.objects.filter(pk=resource_id).update(message=note[:2000], reconciled_at=timezone.now())
    log.warning("reconcile of resource %s failed (attempt %s, %s): %s", resource_id, attempt,
                "transient" if retryable else "permanent", message)


# --- deletion ----------------------------------------------------------------------------------


def cleanup_resource(cluster_id: int, namespace: str, project: str, environment: str, resource: str) -> int:
    """Delete every object Hoist wrote for a deleted resource, found by its labels."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None:
        return 0
    selector = ",".join(f"{k}={v}" for k, v in selector_for(project, environment, resource).items())
    deleted = 0
    with ClusterClient.for_cluster(cluster) as kube:
        for api_version, kind in [(IMAGESOURCE_API, "ImageSource"), *((v, k) for k, v in API_VERSIONS.items())]:
            try:
                items = kube.list(api_version, kind, namespace, selector)
            except ClusterError as exc:
                if exc.status == 404:
                    continue
                raise
            for item in items:
                deleted += kube.delete(api_version, kind, namespace, item["metadata"]["name"])
    return deleted
