"""The observer: watches feed rollouts, hand edits and lost objects back in seconds; lost work is handed out again.

These run the observer's threads against the sandbox over HTTP, with
django-q in sync mode (a queued reconcile runs at once, in the thread that
queued it), so they need real commits (`transactional_db`).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.conf import Conf
from kubernetes import client as k8s

from environments.models import Phase, Resource
from promotions import observer, reconcile
from promotions.models import ObserverLease, Promotion
from tests.fixtures.domain import digest

IMAGE = "registry.a.example/shop/web"


def eventually(check, timeout=8.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(interval)


@pytest.fixture
def sync_tasks(monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)


# The in-memory SQLite test database locks whole tables between threads; the observer's
# threads are exercised on PostgreSQL (CI runs both). The unit tests below run on both.
threads = pytest.mark.skipif(connection.vendor != "postgresql", reason="threads need PostgreSQL's row-level concurrency")


@pytest.fixture
def running(transactional_db, sync_tasks, settings):
    """An observer running in the background; stopped (and its lease dropped) after the test."""
    settings.HOIST_OBSERVER_NUDGE_AFTER_S = 0.3
    started = []

    def start(**kwargs):
        watcher = observer.Observer(tick_s=0.1, watch_timeout_s=1, **kwargs)
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        started.append((watcher, thread))
        eventually(lambda: watcher.leading and watcher.watches and all(
            w.relists for (_, kind), w in watcher.watches.items() if kind == "Deployment"))
        return watcher

    yield start
    for watcher, thread in started:
        watcher.stop.set()
        thread.join(timeout=5)
        for watch in list(watcher.watches.values()) + [w for w in threading.enumerate() if w.name.startswith("watch-")]:
            watch.join(timeout=3)  # no thread may touch the database after the test


@pytest.fixture
def web(dev, make_resource, clusters):
    resource = make_resource(dev, "web", image=f"{IMAGE}@{digest(1)}", ports=[8080], replicas=2)
    reconcile.reconcile_resource(resource.pk)
    return resource


def apps(server):
    return k8s.AppsV1Api(k8s.ApiClient(server.configuration()))


def image_in_cluster(server, namespace="shop-dev", name="web"):
    obj = server.get_object("apps/v1", "deployments", namespace, name)
    return obj and obj["spec"]["template"]["spec"]["containers"][0]["image"]


@threads
def test_a_hand_edit_is_put_back_within_seconds_and_recorded(running, web, clusters):
    running()
    apps(clusters["a"]).patch_namespaced_deployment("web", "shop-dev", {"spec": {"template": {"spec": {
        "containers": [{"name": "web", "image": f"{IMAGE}:hotfix"}]}}}})
    eventually(lambda: image_in_cluster(clusters["a"]) == f"{IMAGE}@{digest(1)}")
    drift = eventually(lambda: Promotion.objects.filter(resource=web, reason=Promotion.Reason.DRIFT).first())
    assert "hotfix" in drift.actor_label


@threads
def test_a_deleted_object_is_put_back(running, web, clusters):
    running()
    k8s.CoreV1Api(k8s.ApiClient(clusters["a"].configuration())).delete_namespaced_service("web", "shop-dev")
    eventually(lambda: clusters["a"].get_object("v1", "services", "shop-dev", "web"))


@threads
def test_a_cluster_that_comes_back_empty_is_refilled(running, web, clusters):
    watcher = running()
    clusters["a"].reset()  # wiped, as a cluster restored from nothing: open watches end
    eventually(lambda: image_in_cluster(clusters["a"]) == f"{IMAGE}@{digest(1)}")
    eventually(lambda: clusters["a"].get_object("v1", "services", "shop-dev", "web"))
    assert sum(w.relists for (_, kind), w in watcher.watches.items() if kind == "Deployment") >= 2


@threads
def test_a_rollout_is_finished_by_the_watch(running, web, clusters):
    from environments import services

    running()
    clusters["a"].api.hold_rollouts(True)
    services.artifact_publish(resource=web, digest=digest(2))  # sync: reconciled now, rolling out
    assert Resource.objects.get(pk=web.pk).phase == Phase.PROGRESSING
    clusters["a"].api.hold_rollouts(False)
    eventually(lambda: Resource.objects.get(pk=web.pk).phase == Phase.READY)
    assert Promotion.objects.get(resource=web, to_digest=digest(2)).status == Promotion.Status.HEALTHY
    # The ImageSource status is written after the phase (under a claim of its own): wait for it.
    eventually(lambda: clusters["a"].get_object("hoist.dev/v1alpha1", "imagesources", "shop-dev", "web")["status"]
               ["latestArtifact"]["digest"] == digest(2))


@threads
def test_a_lost_task_is_handed_out_again(running, web, clusters):
    # A publish whose task was lost (a worker killed): the row is dirty, nobody holds it.
    from environments.models import Artifact

    Artifact.objects.create(resource=web, sequence=2, repository=IMAGE, digest=digest(2), origin="api",
                            first_published_at=timezone.now())
    Resource.objects.filter(pk=web.pk).update(artifact_seq=2, dirty_at=timezone.now() - timedelta(seconds=5),
                                               claimed_until=timezone.now() - timedelta(seconds=1), claim_token="dead")
    running()
    eventually(lambda: image_in_cluster(clusters["a"]) == f"{IMAGE}@{digest(2)}")
    eventually(lambda: Resource.objects.get(pk=web.pk).dirty_at is None)


def test_a_live_claim_is_left_alone(transactional_db, web, settings, monkeypatch):
    queued = []
    monkeypatch.setattr(observer.queue, "enqueue_reconcile_many", queued.extend)
    monkeypatch.setattr(observer, "_backlog", lambda: False)  # the create's task waits in the broker: no worker here
    settings.HOIST_OBSERVER_NUDGE_AFTER_S = 1
    now = timezone.now()
    Resource.objects.filter(pk=web.pk).update(dirty_at=now - timedelta(seconds=5), claimed_until=now + timedelta(seconds=5))
    assert observer.hand_out() == [] and queued == []
    Resource.objects.filter(pk=web.pk).update(claimed_until=None)
    assert observer.hand_out() == [web.pk]
    assert observer.hand_out() == []  # not again before NUDGE_REPEAT_S
    Resource.objects.filter(pk=web.pk).update(next_check_at=now - timedelta(seconds=1), dirty_at=None, nudged_at=None)
    assert observer.hand_out() == [web.pk]  # due (a soak ending) …
    assert Resource.objects.get(pk=web.pk).next_check_at is None  # … and consumed


def test_a_resource_waiting_in_a_busy_queue_is_not_queued_twice(transactional_db, web, settings, monkeypatch):
    from django_q.brokers import get_broker

    queued = []
    monkeypatch.setattr(observer.queue, "enqueue_reconcile_many", queued.extend)
    monkeypatch.setattr(observer, "_broker", None)
    settings.HOIST_OBSERVER_NUDGE_AFTER_S, settings.HOIST_OBSERVER_LOST_AFTER_S = 1, 60
    get_broker().enqueue("a task some worker will get to")  # the workers are behind
    now = timezone.now()
    Resource.objects.filter(pk=web.pk).update(dirty_at=now - timedelta(seconds=5))
    assert observer.hand_out() == []  # waiting in that queue, most likely: not lost
    Resource.objects.filter(pk=web.pk).update(dirty_at=now - timedelta(seconds=61))
    assert observer.hand_out() == [web.pk]  # nothing queued for it for a minute: lost
    Resource.objects.filter(pk=web.pk).update(dirty_at=None, nudged_at=None, next_check_at=now - timedelta(seconds=1))
    assert observer.hand_out() == [web.pk]  # a due check goes out whatever the queue holds


def test_only_one_observer_leads(transactional_db):
    assert observer.hold_lease("a", seconds=5)
    assert not observer.hold_lease("b", seconds=5)
    assert observer.hold_lease("a", seconds=5)  # renewed
    ObserverLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert observer.hold_lease("b", seconds=5)  # a stopped renewing: b takes over
    assert not observer.hold_lease("a", seconds=5)


class FakeKube:
    """Enough of ClusterClient for one Watch pass: a list, then a watch that says 410 Gone."""

    def __init__(self, events):
        self.events, self.lists = events, 0

    def list_versioned(self, *args):
        self.lists += 1
        return [], str(100 + self.lists)

    def watch(self, *args, resource_version="", **kwargs):
        self.watched_from = resource_version
        yield from self.events


def test_a_watch_resumes_from_bookmarks_and_relists_after_410(db):
    handlers = observer.Handlers()
    watch = observer.Watch(1, "apps/v1", "Deployment", handlers, threading.Event())
    kube = FakeKube([{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "250"}}}])
    watch._list(kube)
    watch._watch(kube)
    assert (kube.watched_from, watch.resource_version) == ("101", "250")
    kube.events = [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}]
    watch._watch(kube)
    assert watch.resource_version == ""  # the next pass lists again
    watch._list(kube)
    assert kube.lists == 2 and watch.relists == 2


# --- writes that are not Hoist's (promotions.applied) --------------------------------------------


def deployment_of(server, namespace="shop-dev", name="web"):
    return server.get_object("apps/v1", "deployments", namespace, name)


def service_ports(server, namespace="shop-dev", name="web"):
    obj = server.get_object("v1", "services", namespace, name)
    return obj and [p["port"] for p in obj["spec"]["ports"]]


def target_ports(server, namespace="shop-dev", name="web"):
    obj = server.get_object("v1", "services", namespace, name)
    return obj and [p["targetPort"] for p in obj["spec"]["ports"]]


def test_every_write_of_hoists_is_recorded(transactional_db, web, clusters):
    web.refresh_from_db()
    versions = web.applied_versions
    assert set(versions) == {"Deployment", "Service", "ImageSource"}  # no Secret, no Ingress: none wanted
    assert versions["Deployment"] == f"g{deployment_of(clusters['a'])['metadata']['generation']}"
    source = clusters["a"].get_object("hoist.dev/v1alpha1", "imagesources", "shop-dev", "web")
    assert versions["ImageSource"] == f"rv{source['metadata']['resourceVersion']}"  # after its status write


def test_objects_applied_before_records_were_kept_are_applied_once_more(transactional_db, web, clusters):
    from environments import services

    Resource.objects.filter(pk=web.pk).update(applied_versions={})
    services.artifact_publish(resource=web, digest=digest(2))
    reconcile.reconcile_resource(web.pk)
    web.refresh_from_db()
    assert set(web.applied_versions) == {"Deployment", "Service", "ImageSource"}


@threads
def test_a_hand_edit_of_replicas_or_ports_is_put_back(running, web, clusters):
    running()
    apps(clusters["a"]).patch_namespaced_deployment("web", "shop-dev", {"spec": {"replicas": 5}})
    k8s.CoreV1Api(k8s.ApiClient(clusters["a"].configuration())).patch_namespaced_service(
        "web", "shop-dev", {"spec": {"ports": [{"port": 8080, "targetPort": 9999}]}})
    eventually(lambda: deployment_of(clusters["a"])["spec"]["replicas"] == 2)
    eventually(lambda: target_ports(clusters["a"]) == [8080])


@threads
def test_a_change_made_while_nobody_watched_is_found_by_the_first_list(running, web, clusters):
    apps(clusters["a"]).patch_namespaced_deployment("web", "shop-dev", {"spec": {"replicas": 4}})
    k8s.CoreV1Api(k8s.ApiClient(clusters["a"].configuration())).patch_namespaced_service(
        "web", "shop-dev", {"spec": {"ports": [{"port": 8080, "targetPort": 9999}]}})
    running()
    eventually(lambda: deployment_of(clusters["a"])["spec"]["replicas"] == 2)
    eventually(lambda: target_ports(clusters["a"]) == [8080])


@threads
def test_hoists_own_writes_are_not_taken_for_drift(running, web, clusters, monkeypatch):
    from environments import services

    repairs = []
    enqueue = observer.queue.enqueue_reconcile

    def counting(resource_id, *, repair=False):
        if repair:
            repairs.append(resource_id)
        enqueue(resource_id, repair=repair)

    monkeypatch.setattr(observer.queue, "enqueue_reconcile", counting)
    watcher = running()
    clusters["a"].api.hold_rollouts(True)
    services.artifact_publish(resource=web, digest=digest(2))  # applied now (sync), rolling out
    clusters["a"].api.hold_rollouts(False)
    eventually(lambda: Resource.objects.get(pk=web.pk).phase == Phase.READY)  # the observer wrote the status
    services.resource_update(resource=Resource.objects.get(pk=web.pk), replicas=3, ports=[8080, 9090])
    eventually(lambda: service_ports(clusters["a"]) == [8080, 9090])
    eventually(lambda: not watcher.handlers.suspects, timeout=15)  # every write compared with the records
    assert repairs == []
    assert Promotion.objects.filter(resource=web, reason=Promotion.Reason.DRIFT).count() == 0


@threads
def test_the_leader_vouches_for_clusters_whose_watches_are_in_sync(running, web, clusters):
    watcher = running()
    cluster_a = web.environment.cluster_id
    # cluster-b has no ImageSource CRD yet (nothing of Hoist's ran there): its watch can't sync.
    eventually(lambda: observer.watched_clusters() == {cluster_a})
    watcher.stop.set()
    eventually(lambda: observer.watched_clusters() == set())  # the lease is dropped with its clusters


def test_a_new_leader_vouches_for_nothing_until_it_has_synced(transactional_db):
    assert observer.hold_lease("a", seconds=5, clusters=[3, 1])
    assert observer.watched_clusters() == set()  # taken just now: nothing synced yet
    assert observer.hold_lease("a", seconds=5, clusters=[3, 1])
    assert observer.watched_clusters() == {1, 3}
    ObserverLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert observer.watched_clusters() == set()
    assert observer.hold_lease("b", seconds=5, clusters=[1])  # taken over: what a vouched for is gone
    assert ObserverLease.objects.get().clusters == []
