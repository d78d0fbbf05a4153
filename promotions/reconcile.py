"""Reconcile one resource into its cluster, as small steps.

    decide()        which digest should run (pin / upstream's latest / own latest)
    make_pullable() same cluster: the upstream's reference as is;
                    other cluster: mirror through the central registry first
    apply_objects() server-side apply Secret, Deployment, Service, Ingress, ImageSource
    record()        Promotion rows and resource status; dependants enqueued on commit

One reconcile holds the resource's row lock (select_for_update) from decide to
record, so two workers never interleave on one resource; different resources
reconcile in parallel. Forward-only (DESIGN guarantee 3): every candidate
carries the publishing resource's artifact sequence, and a candidate older
than what the resource already runs is a no-op, so a late or retried task
never rolls anything back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from environments.models import Artifact, Binding, Cluster, Kind, Phase, Resource, SourceType
from environments.selectors import latest_artifact

from . import mirror, queue
from .kube import IMAGESOURCE_API, ClusterClient, ClusterError
from .models import Promotion
from .registry import RegistryError, parse_reference

log = logging.getLogger(__name__)

LABEL_PREFIX = "hoist.dev"
SKIPPED = "SkippedAfterOutage"


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


class Waiting(Exception):
    """Nothing to run yet (the upstream has not published); not an error."""


@dataclass
class Target:
    """The digest to run, where it comes from, and its place in the publisher's order."""

    digest: str
    image: str  # registry/path@digest, as the source publishes it
    sequence: int  # the publishing resource's artifact sequence; 0 for pins (they never move by themselves)
    source_artifact: Artifact | None
    first_published_at: datetime | None
    reason: str


@dataclass
class Outcome:
    changed: bool
    digest: str = ""
    note: str = ""


@dataclass
class Plan:
    """What this reconcile must write; everything else in the cluster is already right."""

    image_changed: bool
    config_changed: bool
    full: bool  # the drift sweep re-applies everything, whatever Hoist believes
    fingerprint: str

    @property
    def nothing_to_do(self) -> bool:
        return not (self.image_changed or self.config_changed or self.full)


def up_to_date(resource: Resource) -> bool:
    """Ready, and no promotion waiting to be marked: an event-driven reconcile can stop here."""
    return resource.phase == Phase.READY and not resource.promotions.filter(
        status=Promotion.Status.QUEUED
    ).exists()


# --- entry points ------------------------------------------------------------------------------


def reconcile_resource(resource_id: int, *, sweep: bool = False, batch: Batch | None = None) -> Outcome | None:
    """Reconcile with in-task retries for transient failures; record every failure.

    After the last attempt a transient failure leaves its promotion queued
    (with the error and the attempt count) for the next sweep, so nothing is
    lost; a permanent one marks it failed.
    """
    attempts = max(1, settings.HOIST_RECONCILE_ATTEMPTS)
    for attempt in range(1, attempts + 1):
        try:
            return reconcile_once(resource_id, sweep=sweep, batch=batch)
        except Waiting as waiting:
            set_phase(resource_id, Phase.WAITING, str(waiting))
            return None
        except (ClusterError, RegistryError) as exc:
            skipped = getattr(exc, "reason", "") == SKIPPED
            final = not exc.retryable or attempt == attempts or skipped
            record_failure(resource_id, exc, attempt=attempt, final=final)
            if final:
                if getattr(exc, "unreachable", False) and batch is not None and not skipped:
                    batch.down_clusters[exc.cluster_name] = exc.message
                return None
            time.sleep(settings.HOIST_RECONCILE_BACKOFF_S * 2 ** (attempt - 1))
    return None


def reconcile_once(resource_id: int, *, sweep: bool = False, batch: Batch | None = None) -> Outcome | None:
    """One attempt; `batch` is what the reconciles of one task share (see Batch)."""
    with transaction.atomic():
        try:
            resource = (
                Resource.objects.select_for_update(of=("self",))
                .select_related("environment__cluster", "environment__project", "promote_from__environment__cluster")
                .get(pk=resource_id)
            )
        except Resource.DoesNotExist:
            return None  # deleted meanwhile: cleanup has its own task
        outage = batch.down_clusters.get(resource.environment.cluster.name) if batch is not None else None
        if outage:
            raise ClusterError(f"{outage} (not retried again in this batch)", retryable=True, reason=SKIPPED)
        if resource.kind != Kind.DEPLOYMENT:
            set_phase(resource.pk, Phase.PENDING, f"{resource.get_kind_display()} resources are not run in clusters yet; only deployments are.")
            return None
        with ClusterClient.for_cluster(resource.environment.cluster) as kube:
            target = decide(resource, kube, batch)
            if not is_forward(resource, target):
                return Outcome(changed=False, digest=resource.current_digest, note="stale candidate ignored")
            image = make_pullable(resource, target)
            drift = observe_drift(kube, resource) if sweep else None
            objects = desired_objects(resource, image, target.digest)
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
                return Outcome(changed=False, digest=target.digest, note="up to date")
            own = own_artifact(resource, target, image, plan)
            apply_objects(kube, resource, objects, own, plan)
            outcome = record(resource, target, image, drift)
    return outcome


# --- step 1: decide ----------------------------------------------------------------------------


def decide(resource: Resource, kube: ClusterClient, batch: Batch | None = None) -> Target:
    if resource.source_type == SourceType.IMAGE:
        return _decide_own(resource)
    upstream = resource.promote_from
    if resource.binding == Binding.PIN_DIGEST:
        source_artifact = upstream.artifacts.filter(digest=resource.pinned_digest).order_by("-sequence").first()
        repository = source_artifact.repository if source_artifact else _repository_of(upstream)
        return Target(
            digest=resource.pinned_digest, image=f"{repository}@{resource.pinned_digest}", sequence=0,
            source_artifact=source_artifact,
            first_published_at=source_artifact.first_published_at if source_artifact else None,
            reason=Promotion.Reason.PIN_EDIT,
        )
    if _same_cluster(resource, upstream):
        return _decide_from_image_source(resource, upstream, kube, batch)
    latest = latest_artifact(upstream)
    if latest is None:
        raise Waiting(f"Waiting for {upstream} to publish an image.")
    return Target(latest.digest, latest.reference, latest.sequence, latest, latest.first_published_at, Promotion.Reason.TRACK_LATEST)


def _decide_own(resource: Resource) -> Target:
    latest = latest_artifact(resource)
    if latest is None:
        latest = _resolve_tag(resource)
    return Target(latest.digest, latest.reference, latest.sequence, latest, latest.first_published_at, Promotion.Reason.PUBLISH)


def _resolve_tag(resource: Resource) -> Artifact:
    """An image source given by tag: resolve it once, and record it as the first publish."""
    ref = parse_reference(resource.image)
    digest = mirror.resolve(resource.image)
    now = timezone.now()
    resource.artifact_seq += 1
    Resource.objects.filter(pk=resource.pk).update(artifact_seq=resource.artifact_seq)
    return Artifact.objects.create(
        resource=resource, sequence=resource.artifact_seq, repository=ref.name, digest=digest, tag=ref.tag or "latest",
        origin=Artifact.Origin.RESOLVE, first_published_at=now,
    )


def _decide_from_image_source(resource: Resource, upstream: Resource, kube: ClusterClient, batch: Batch | None) -> Target:
    """Same cluster: the upstream's ImageSource says what it publishes (no registry round-trip).

    Within one batch the read is shared: a batch lasts a second or so, and a
    publish during it queues another batch that moves everyone forward again.
    """
    key = (kube.endpoint, upstream.environment.namespace, upstream.name)
    if batch is not None and key in batch.image_sources:
        obj = batch.image_sources[key]
    else:
        obj = kube.read_image_source(upstream.environment.namespace, upstream.name)
        if batch is not None:
            batch.image_sources[key] = obj
    latest = ((obj or {}).get("status") or {}).get("latestArtifact")
    if not latest:
        raise Waiting(
            f"Waiting for {upstream} to publish: no ImageSource {upstream.environment.namespace}/{upstream.name} "
            f"with a latest artifact on cluster {upstream.environment.cluster}."
        )
    source_artifact = _check_published(upstream, latest)
    first = latest.get("firstPublishedAt") or latest.get("publishedAt")
    return Target(
        digest=latest["digest"], image=latest["image"], sequence=int(latest["sequence"]),
        source_artifact=source_artifact,
        first_published_at=datetime.fromisoformat(first.replace("Z", "+00:00")) if first else None,
        reason=Promotion.Reason.TRACK_LATEST,
    )


def _check_published(upstream: Resource, latest: dict) -> Artifact | None:
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
    recorded = upstream.artifacts.filter(sequence=sequence).order_by().first()
    if recorded is not None and recorded.digest != ref.digest:
        raise ClusterError(
            f"ImageSource {upstream.environment.namespace}/{upstream.name} says publish #{sequence} is {ref.digest}, "
            f"but Hoist recorded {recorded.digest}; refusing to promote from it", retryable=False)
    return recorded


def _same_cluster(resource: Resource, upstream: Resource) -> bool:
    return resource.environment.cluster_id == upstream.environment.cluster_id


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


def desired_objects(resource: Resource, image: str, digest: str) -> dict[str, dict | None]:
    """Every object the resource owns in its cluster; None means "must not exist"."""
    namespace = resource.environment.namespace
    labels = labels_for(resource)
    selector = selector_for(resource.environment.project.slug, resource.environment.slug, resource.name)
    meta = {"name": resource.name, "namespace": namespace, "labels": labels}
    env_vars = list(resource.env_vars.order_by("name"))
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


def apply_objects(kube: ClusterClient, resource: Resource, objects: dict, own: Artifact | None, plan: Plan) -> None:
    """Apply what the plan says changed: the Deployment and the ImageSource when the image
    or config changed; Secret, Service and Ingress when the config changed. The drift
    sweep (`plan.full`) applies everything."""
    config = plan.config_changed or plan.full
    for kind in ("Secret", "Deployment", "Service", "Ingress"):
        if kind != "Deployment" and not config:
            continue
        obj = objects[kind]
        if obj is None:
            name = secret_name(resource) if kind == "Secret" else resource.name
            kube.delete(API_VERSIONS[kind], kind, resource.environment.namespace, name)
        else:
            _apply_in_namespace(kube, resource, obj)
    _apply_image_source(kube, resource, objects["ImageSource"], own)
    resource.config_hash = plan.fingerprint


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


def _apply_image_source(kube: ClusterClient, resource: Resource, image_source: dict, own: Artifact) -> None:
    kube.ensure_crd()
    applied = _apply_in_namespace(kube, resource, image_source)
    latest = {
        "image": image_source["spec"]["image"], "digest": own.digest, "sequence": own.sequence,
        "publishedAt": _rfc3339(own.published_at), "firstPublishedAt": _rfc3339(own.first_published_at),
    }
    status = {"observedGeneration": (applied or {}).get("metadata", {}).get("generation", 1), "latestArtifact": latest}
    meta = {"name": resource.name, "namespace": resource.environment.namespace}
    kube.apply({"apiVersion": IMAGESOURCE_API, "kind": "ImageSource", "metadata": meta, "status": status}, subresource="status")


def _rfc3339(value: datetime) -> str:
    return value.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else ""


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


def own_artifact(resource: Resource, target: Target, image: str, plan: Plan) -> Artifact:
    """What this resource publishes to its own dependants.

    An image source publishes its own artifacts; a promoted resource
    re-publishes what it applies (so dev → staging → prod follows what each
    hop actually runs), keeping the first publish time for latency figures.
    """
    if resource.source_type == SourceType.IMAGE:
        return target.source_artifact
    if not plan.image_changed:
        latest = resource.artifacts.order_by("-sequence").first()
        if latest is not None:
            return latest
    # Counted here, saved with the status in record(): the row is locked meanwhile.
    resource.artifact_seq += 1
    return Artifact.objects.create(
        resource=resource, sequence=resource.artifact_seq, repository=parse_reference(image).name, digest=target.digest,
        origin=Artifact.Origin.PROMOTION, upstream=target.source_artifact,
        first_published_at=target.first_published_at or timezone.now(),
    )


def record(resource: Resource, target: Target, image: str, drift: str | None) -> Outcome:
    now = timezone.now()
    previous = resource.current_digest
    changed = previous != target.digest
    queued = list(resource.promotions.filter(status=Promotion.Status.QUEUED).order_by("queued_at", "id"))
    latency = (now - target.first_published_at).total_seconds() if target.first_published_at else None
    matched = [p for p in queued if p.to_digest == target.digest]
    for promotion in matched:
        promotion.status, promotion.applied_at, promotion.latency_s = Promotion.Status.APPLIED, now, latency
        promotion.attempts += 1
        promotion.save(update_fields=["status", "applied_at", "latency_s", "attempts"])
    # Older requests this apply overtakes (a newer publish, a re-edited pin).
    stale = [p.pk for p in queued if p not in matched]
    if stale:
        Promotion.objects.filter(pk__in=stale).update(status=Promotion.Status.SUPERSEDED)
    if drift is not None:
        Promotion.objects.create(
            resource=resource, from_digest=drift.rpartition("@")[2] if "@" in drift else "", to_digest=target.digest,
            reason=Promotion.Reason.DRIFT, status=Promotion.Status.APPLIED, applied_at=now, attempts=1,
            actor_label=f"drift sweep: cluster ran {drift}", artifact=target.source_artifact,
        )
    elif changed and not matched:
        Promotion.objects.create(
            resource=resource, from_digest=previous, to_digest=target.digest, reason=target.reason,
            status=Promotion.Status.APPLIED, applied_at=now, latency_s=latency, attempts=1,
            artifact=target.source_artifact, actor_label="Hoist",
        )
    resource.current_digest, resource.current_image = target.digest, image
    if target.sequence:
        resource.applied_seq = target.sequence
    resource.phase, resource.message, resource.reconciled_at = Phase.READY, "", now
    resource.save(update_fields=[
        "current_digest", "current_image", "applied_seq", "artifact_seq", "phase", "message", "reconciled_at", "config_hash",
    ])
    if changed:
        queue.enqueue_reconcile_many(
            list(resource.dependants.filter(binding=Binding.TRACK_LATEST).order_by("pk").values_list("pk", flat=True))
        )
    return Outcome(changed=changed, digest=target.digest)


def set_phase(resource_id: int, phase: str, message: str) -> None:
    Resource.objects.filter(pk=resource_id).update(phase=phase, message=message[:2000], reconciled_at=timezone.now())


def record_failure(resource_id: int, exc: Exception, *, attempt: int, final: bool) -> None:
    """Show the failure on the resource and its pending promotion; nothing else changes."""
    retryable = getattr(exc, "retryable", False)
    message = str(exc)[:2000]
    with transaction.atomic():
        pending = Promotion.objects.filter(resource_id=resource_id, status=Promotion.Status.QUEUED)
        if final and not retryable:
            pending.update(status=Promotion.Status.FAILED, error=message)
            set_phase(resource_id, Phase.FAILED, message)
        else:
            for promotion in pending:
                promotion.attempts += 1
                promotion.error = message + ("" if not final else " (will retry on the next sweep)")
                promotion.save(update_fields=["attempts", "error"])
            set_phase(resource_id, Phase.FAILED if final else Phase.PROGRESSING,
                      f"{'Retrying' if not final else 'Will retry'} after attempt {attempt}: {message}")
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
