"""Rollouts: what "healthy" means, follow healthy or published, soak, rollback, lock-free claims.

The sandbox's Deployment controller writes status at once unless told
otherwise, so most rollouts here are healthy right after the apply; a
failing or slow one is set up through `rollout.record()` or the sandbox's
rollout switches.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from environments import services
from environments.models import Artifact, Binding, Follow, Phase, Resource
from promotions import reconcile, rollout
from promotions.kube import ClusterClient
from promotions.models import Promotion
from tests.fixtures.domain import digest

IMAGE = "registry.a.example/shop/web"


def deployment(replicas=3, generation=2, observed=2, updated=3, available=3, current=3, progressing=None,
               available_status="True", image=f"{IMAGE}@{digest(1)}"):
    conditions = [{"type": "Available", "status": available_status}]
    if progressing:
        conditions.append(progressing)
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
        "status": {"observedGeneration": observed, "replicas": current, "updatedReplicas": updated,
                   "availableReplicas": available, "conditions": conditions},
    }


# --- assess ----------------------------------------------------------------------------------


def test_healthy_needs_every_replica_updated_and_available_and_the_generation_observed():
    assert rollout.assess(deployment(), "web").state == rollout.HEALTHY
    assert rollout.assess(deployment(observed=1), "web").state == rollout.PROGRESSING
    progressing = rollout.assess(deployment(updated=2, available=2, current=4), "web")
    assert (progressing.state, progressing.summary) == (rollout.PROGRESSING, "rolling out 2/3")
    assert rollout.assess(deployment(current=4), "web").state == rollout.PROGRESSING  # an old pod still runs
    assert rollout.assess(deployment(available_status="False"), "web").state == rollout.PROGRESSING


def test_failed_is_a_progress_deadline_exceeded():
    stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": 'ReplicaSet "web-abc" has timed out progressing.'}
    health = rollout.assess(deployment(available=0, progressing=stuck), "web")
    assert (health.state, health.message) == (rollout.FAILED, 'ReplicaSet "web-abc" has timed out progressing.')
    assert health.summary.startswith("failed: ")


def test_zero_replicas_are_healthy_and_a_missing_deployment_is_missing():
    assert rollout.assess(deployment(replicas=0, updated=0, available=0, current=0, available_status="False"), "web").state == rollout.HEALTHY
    assert rollout.assess(None, "web").state == rollout.MISSING


# --- the lifecycle ---------------------------------------------------------------------------


@pytest.fixture
def web(dev, make_resource, clusters):
    return make_resource(dev, "web", image=f"{IMAGE}@{digest(1)}", ports=[8080], replicas=2)


def test_a_promotion_ends_healthy_with_both_latencies(web, clusters):
    reconcile.reconcile_resource(web.pk)
    promotion = Promotion.objects.get(resource=web)
    assert promotion.status == Promotion.Status.HEALTHY
    assert promotion.applied_at and promotion.healthy_at and promotion.healthy_at >= promotion.applied_at
    assert promotion.latency_s is not None and promotion.healthy_latency_s >= promotion.latency_s
    web.refresh_from_db()
    assert (web.phase, web.healthy_digest, web.rollout_ready, web.rollout_total) == (Phase.READY, digest(1), 2, 2)
    assert Artifact.objects.get(resource=web).healthy_at is not None
    status = clusters["a"].get_object("hoist.dev/v1alpha1", "imagesources", "shop-dev", "web")["status"]
    assert status["latestArtifact"]["digest"] == status["publishedArtifact"]["digest"] == digest(1)
    assert status["latestArtifact"]["healthyAt"] and len(status["healthyArtifacts"]) == 1


def test_a_rollout_in_progress_is_shown_then_finished_by_what_the_cluster_says(web, clusters):
    clusters["a"].api.hold_rollouts(True)
    reconcile.reconcile_resource(web.pk)
    web.refresh_from_db()
    promotion = Promotion.objects.get(resource=web)
    assert promotion.status == Promotion.Status.ROLLING_OUT and web.phase == Phase.PROGRESSING
    assert web.message.startswith("rolling out 0/2")
    clusters["a"].api.hold_rollouts(False)
    with ClusterClient.for_cluster(web.environment.cluster) as kube:
        live = kube.get("apps/v1", "Deployment", "shop-dev", "web")
    assert rollout.record(web.pk, rollout.assess(live, "web")).became == rollout.HEALTHY
    promotion.refresh_from_db()
    assert promotion.status == Promotion.Status.HEALTHY


def test_what_is_not_what_hoist_applied_is_not_recorded(web, clusters):
    reconcile.reconcile_resource(web.pk)
    other = rollout.Health(rollout.FAILED, f"{IMAGE}@{digest(9)}", message="not ours")
    assert rollout.record(web.pk, other).became == ""
    web.refresh_from_db()
    assert web.phase == Phase.READY


def fail(resource, message="timed out progressing"):
    resource.refresh_from_db()
    return rollout.record(resource.pk, rollout.Health(rollout.FAILED, resource.current_image, 0, 2, message))


def test_a_failed_rollout_is_recorded_with_the_clusters_message(web, clusters):
    reconcile.reconcile_resource(web.pk)
    services.artifact_publish(resource=web, digest=digest(2))
    clusters["a"].api.hold_rollouts(True)
    reconcile.reconcile_resource(web.pk)
    assert fail(web, 'ReplicaSet "web-x" has timed out progressing.').became == rollout.FAILED
    web.refresh_from_db()
    assert (web.phase, web.failed_digest, web.healthy_digest) == (Phase.FAILED, digest(2), digest(1))
    assert "has timed out progressing" in web.message
    failed = Promotion.objects.get(resource=web, to_digest=digest(2))
    assert failed.status == Promotion.Status.FAILED and "timed out" in failed.error
    # Not retried by itself: the next reconcile leaves it alone …
    clusters["a"].api.hold_rollouts(False)
    assert reconcile.reconcile_resource(web.pk).note == "failed digest not retried"
    # … until something newer arrives.
    services.artifact_publish(resource=web, digest=digest(3))
    reconcile.reconcile_resource(web.pk)
    web.refresh_from_db()
    assert (web.current_digest, web.phase, web.failed_digest) == (digest(3), Phase.READY, digest(2))


def test_rollback_on_failure_reapplies_the_last_healthy_digest(web, clusters):
    Resource.objects.filter(pk=web.pk).update(rollback_on_failure=True)
    reconcile.reconcile_resource(web.pk)
    services.artifact_publish(resource=web, digest=digest(2))
    clusters["a"].api.hold_rollouts(True)
    reconcile.reconcile_resource(web.pk)
    fail(web)
    web.refresh_from_db()
    assert web.dirty_at is not None  # the rollback is queued
    clusters["a"].api.hold_rollouts(False)
    reconcile.reconcile_resource(web.pk)
    web.refresh_from_db()
    assert (web.current_digest, web.phase, web.failed_digest) == (digest(1), Phase.READY, digest(2))
    rollback = Promotion.objects.get(resource=web, reason=Promotion.Reason.ROLLBACK)
    assert (rollback.from_digest, rollback.to_digest, rollback.status) == (digest(2), digest(1), Promotion.Status.HEALTHY)
    assert clusters["a"].get_object("apps/v1", "deployments", "shop-dev", "web")["spec"]["template"]["spec"][
        "containers"][0]["image"].endswith(digest(1))


def test_a_failed_pin_is_reported_not_rolled_back(staging, prod, web, make_resource, clusters, settings):
    pinned = make_resource(staging, "pinned", upstream=web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(pinned.pk)
    services.resource_pin(resource=pinned, digest=digest(2))
    clusters["a"].api.hold_rollouts(True)
    reconcile.reconcile_resource(pinned.pk)
    fail(pinned)
    clusters["a"].api.hold_rollouts(False)
    assert reconcile.reconcile_resource(pinned.pk).note == "failed digest not retried"
    pinned.refresh_from_db()
    assert (pinned.pinned_digest, pinned.current_digest, pinned.phase) == (digest(2), digest(2), Phase.FAILED)
    assert not Promotion.objects.filter(resource=pinned, reason=Promotion.Reason.ROLLBACK).exists()
    # A person re-pinning is a new decision: it is tried again.
    services.resource_pin(resource=pinned, digest=digest(1))
    services.resource_pin(resource=pinned, digest=digest(2))
    reconcile.reconcile_resource(pinned.pk)
    pinned.refresh_from_db()
    assert (pinned.current_digest, pinned.phase) == (digest(2), Phase.READY)


# --- follow healthy or published, and soak ------------------------------------------------------


def test_track_latest_follows_what_runs_healthy_by_default(web, staging, make_resource, clusters):
    follower = make_resource(staging, "follower", upstream=web)
    eager = make_resource(staging, "eager", upstream=web, follow=Follow.PUBLISHED)
    reconcile.reconcile_resource(web.pk)
    for resource in (follower, eager):
        reconcile.reconcile_resource(resource.pk)
    services.artifact_publish(resource=web, digest=digest(2))
    clusters["a"].api.hold_rollouts(True)  # dev never gets digest 2 running
    reconcile.reconcile_resource(web.pk)
    clusters["a"].api.hold_rollouts(False)
    for resource in (follower, eager):
        reconcile.reconcile_resource(resource.pk)
        resource.refresh_from_db()
    assert follower.current_digest == digest(1), "followed a digest the upstream never ran healthy"
    assert eager.current_digest == digest(2)


def test_soak_takes_the_newest_digest_that_has_soaked_and_a_newer_build_does_not_reset_it(web):
    now = timezone.now()
    newer, older = object(), object()
    web.soak_seconds = 60
    chosen, recheck = reconcile._soaked(web, [(newer, now - timedelta(seconds=10)), (older, now - timedelta(seconds=100))], web)
    assert chosen is older
    assert abs((recheck - (now + timedelta(seconds=50))).total_seconds()) < 1
    with pytest.raises(reconcile.Waiting) as waiting:
        reconcile._soaked(web, [(newer, now - timedelta(seconds=10))], web)
    assert waiting.value.recheck_at is not None


def test_a_follower_with_a_soak_waits_then_takes_it(web, staging, make_resource, clusters):
    follower = make_resource(staging, "follower", upstream=web, soak_seconds=30)
    reconcile.reconcile_resource(web.pk)
    reconcile.reconcile_resource(follower.pk)
    follower.refresh_from_db()
    assert follower.phase == Phase.WAITING and "30 s" in follower.message
    assert follower.next_check_at is not None and follower.dirty_at is None
    # Thirty seconds later (the upstream's healthy time moved back instead of sleeping).
    Artifact.objects.filter(resource=web).update(healthy_at=timezone.now() - timedelta(seconds=31))
    with ClusterClient.for_cluster(web.environment.cluster) as kube:
        reconcile.publish_status(kube, Resource.objects.get(pk=web.pk), f"{IMAGE}@{digest(1)}", digest(1))
    reconcile.reconcile_resource(follower.pk)
    follower.refresh_from_db()
    assert (follower.current_digest, follower.phase) == (digest(1), Phase.READY)


# --- no lock across I/O ------------------------------------------------------------------------


def test_nothing_is_held_open_while_the_cluster_is_called(web, clusters, monkeypatch):
    seen = []
    real = ClusterClient.apply

    def apply(self, obj, **kwargs):
        seen.append(connection.in_atomic_block)
        return real(self, obj, **kwargs)

    monkeypatch.setattr(ClusterClient, "apply", apply)
    reconcile.reconcile_resource(web.pk)
    # The suite runs each test in a transaction (the db fixture): one level is the test's own.
    assert seen and max(seen) == min(seen), "a reconcile opened a transaction around a cluster call"


def test_a_claim_is_exclusive_until_released_or_expired(web, settings):
    first = reconcile.claim(web.pk)
    assert first is not None and reconcile.claim(web.pk) is None
    reconcile.release(web.pk, first)
    second = reconcile.claim(web.pk)
    assert second is not None
    Resource.objects.filter(pk=web.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert reconcile.claim(web.pk) is not None  # a worker killed mid-task loses its lease


def test_a_reconcile_that_lost_its_claim_records_nothing(web, clusters, monkeypatch):
    real = reconcile.apply_objects

    def steal(*args, **kwargs):
        health = real(*args, **kwargs)
        Resource.objects.filter(pk=web.pk).update(claim_token="someone-else")
        return health

    monkeypatch.setattr(reconcile, "apply_objects", steal)
    assert reconcile.reconcile_resource(web.pk) is None
    web.refresh_from_db()
    assert web.current_digest == "" and Promotion.objects.get(resource=web).status == Promotion.Status.APPLYING


def test_a_change_during_a_reconcile_is_reconciled_again(web, clusters, monkeypatch):
    queued = []
    monkeypatch.setattr(reconcile.queue, "enqueue_reconcile", lambda pk, **kw: queued.append(pk))
    real = reconcile.apply_objects

    def meanwhile(*args, **kwargs):
        Resource.objects.filter(pk=web.pk).update(dirty_at=timezone.now())
        return real(*args, **kwargs)

    monkeypatch.setattr(reconcile, "apply_objects", meanwhile)
    reconcile.reconcile_resource(web.pk)
    web.refresh_from_db()
    assert web.dirty_at is not None and queued == [web.pk]


def test_a_stale_queued_promotion_is_superseded_by_a_newer_decision(staging, web, make_resource, clusters):
    pinned = make_resource(staging, "pinned", upstream=web, binding=Binding.PIN_DIGEST, pinned=digest(1))
    create = Promotion.objects.get(resource=pinned, reason=Promotion.Reason.CREATE)
    services.resource_pin(resource=pinned, digest=digest(2))
    create.refresh_from_db()
    assert create.status == Promotion.Status.SUPERSEDED


# --- the apply body ------------------------------------------------------------------------------


def test_characters_outside_the_bmp_travel_as_utf8(dev, make_resource, clusters):
    web = make_resource(dev, "web", image=f"{IMAGE}@{digest(1)}", env=[{"name": "GREETING", "value": "hi 😀 ☃"}])
    reconcile.reconcile_resource(web.pk)
    web.refresh_from_db()
    assert web.phase == Phase.READY, web.message
    env = clusters["a"].get_object("apps/v1", "deployments", "shop-dev", "web")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "GREETING", "value": "hi 😀 ☃"} in env
