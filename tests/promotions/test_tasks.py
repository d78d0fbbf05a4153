"""django-q2 tasks: publish → on_commit → async_task → reconcile → dependants, in sync mode."""

import pytest
from django_q.conf import Conf

from environments import services
from promotions import tasks
from tests.fixtures.domain import digest


@pytest.fixture
def sync_tasks(monkeypatch):
    # django-q2 runs async_task inline when SYNC is on: the whole task path, no worker process.
    monkeypatch.setattr(Conf, "SYNC", True)


def image_of(server, namespace, name):
    return server.get_object("apps/v1", "deployments", namespace, name)["spec"]["template"]["spec"]["containers"][0]["image"]


def test_a_publish_propagates_through_the_queue_transitively(dev, staging, qa, make_resource, clusters, sync_tasks,
                                                            django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    with django_capture_on_commit_callbacks(execute=True):
        mid = make_resource(staging, upstream=web)
    with django_capture_on_commit_callbacks(execute=True):
        make_resource(qa, upstream=mid)
    assert image_of(clusters["a"], "shop-qa", "web").endswith(digest(1))
    with django_capture_on_commit_callbacks(execute=True):
        services.artifact_publish(resource=web, digest=digest(2))
    for namespace in ("shop-dev", "shop-staging", "shop-qa"):
        assert image_of(clusters["a"], namespace, "web").endswith(digest(2))


def test_the_sweep_queues_every_resource(dev, make_resource, clusters, sync_tasks):
    make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    make_resource(dev, "api", image="registry.a.example/shop/api@" + digest(2))
    assert tasks.reconcile_all() == 2
    assert image_of(clusters["a"], "shop-dev", "api").endswith(digest(2))


def test_the_sweep_leaves_clusters_the_observer_watches_to_it(dev, prod, make_resource, clusters, sync_tasks,
                                                            monkeypatch):
    from environments.models import Resource
    from promotions import observer

    recorded = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    older = make_resource(dev, "api", image="registry.a.example/shop/api@" + digest(2))
    elsewhere = make_resource(prod, "web", image="registry.b.example/shop/web@" + digest(3))
    Resource.objects.filter(pk=recorded.pk).update(current_image="x@" + digest(1), applied_versions={"Deployment": "g1"})
    # Applied before Hoist recorded its writes: swept once, until it has records.
    Resource.objects.filter(pk=older.pk).update(current_image="x@" + digest(2), applied_versions={})
    queued = []
    monkeypatch.setattr(tasks, "async_task", lambda func, ids, sweep, **kw: queued.extend(ids))
    assert observer.hold_lease("observer-1") and observer.hold_lease("observer-1", clusters=[dev.cluster_id])
    tasks.reconcile_all()
    assert sorted(queued) == sorted([older.pk, elsewhere.pk])
    queued.clear()
    observer.drop_lease("observer-1")  # no observer: everything is re-applied, as before
    tasks.reconcile_all()
    assert sorted(queued) == sorted([recorded.pk, older.pk, elsewhere.pk])


def test_the_drift_sweep_is_scheduled(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="hoist-drift-sweep")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == ("promotions.tasks.reconcile_all", "I", 1)


def test_a_webhook_push_reaches_track_latest_dependants(client, dev, staging, make_resource, clusters, sync_tasks,
                                                        settings, django_capture_on_commit_callbacks):
    import json

    settings.HOIST_WEBHOOK_TOKEN = "t0ken"
    with django_capture_on_commit_callbacks(execute=True):
        web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    web.image = "registry.a.example/shop/web:main"  # now follows a tag (as edited in the UI)
    web.save(update_fields=["image"])
    with django_capture_on_commit_callbacks(execute=True):
        make_resource(staging, upstream=web)
    event = {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(2),
                                          "repository": "shop/web", "tag": "main"}}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/hooks/registry/?registry=registry.a.example", json.dumps({"events": [event]}),
                               content_type="application/json", HTTP_AUTHORIZATION="Bearer t0ken")
    assert response.status_code == 202
    assert image_of(clusters["a"], "shop-staging", "web") == "registry.a.example/shop/web@" + digest(2)


def _writes(monkeypatch):
    """(kind, name) of every apply through Hoist's cluster client, in order."""
    from promotions.kube import ClusterClient

    seen, real = [], ClusterClient.apply

    def spy(self, obj, *, subresource=""):
        seen.append((obj["kind"] + (f"/{subresource}" if subresource else ""), obj["metadata"]["name"]))
        return real(self, obj, subresource=subresource)

    monkeypatch.setattr(ClusterClient, "apply", spy)
    return seen


def _published_twice(dev, staging, make_resource, count):
    """`web` and `count` followers running digest 1; web published and running digest 2, its
    followers not yet reconciled (their next chunk moves them)."""
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    followers = [make_resource(staging, f"app{n}", upstream=web) for n in range(count)]
    tasks.reconcile_resources([web.pk])
    tasks.reconcile_resources([f.pk for f in followers])
    services.artifact_publish(resource=web, digest=digest(2))
    tasks.reconcile_resources([web.pk])
    return web, followers


def test_a_chunk_applies_every_deployment_before_finishing_any(dev, staging, make_resource, clusters, monkeypatch):
    from environments.models import Resource
    from promotions.models import Promotion

    web, followers = _published_twice(dev, staging, make_resource, 4)
    writes = _writes(monkeypatch)
    tasks.reconcile_resources([f.pk for f in followers])
    kinds = [kind for kind, _ in writes]
    assert kinds == ["Deployment"] * 4 + ["ImageSource", "ImageSource/status"] * 4
    assert [name for kind, name in writes if kind == "Deployment"] == [f"app{n}" for n in range(4)]
    for follower in followers:  # and each finished as a reconcile in one go would have
        row = Resource.objects.get(pk=follower.pk)
        assert (row.current_digest, row.phase, row.claim_token, row.dirty_at) == (digest(2), "ready", "", None)
        assert Promotion.objects.get(resource=row, to_digest=digest(2)).status == Promotion.Status.HEALTHY
        assert image_of(clusters["a"], "shop-staging", follower.name).endswith(digest(2))


def test_a_chunk_keeps_the_claims_of_what_waits_alive_in_one_statement(dev, staging, make_resource, clusters, monkeypatch,
                                                                       settings):
    from environments.models import Resource
    from promotions import reconcile

    web, followers = _published_twice(dev, staging, make_resource, 3)
    settings.HOIST_RECONCILE_LEASE_S = 0.001  # every claim "old" at once: each start renews what waits
    renewals, real = [], reconcile.renew

    def spy(claims):
        renewals.append(sorted(claims))
        return real(claims)

    monkeypatch.setattr(reconcile, "renew", spy)
    writes = _writes(monkeypatch)
    tasks.reconcile_resources([f.pk for f in followers])
    ids = [f.pk for f in followers]
    # Still every Deployment first: old claims are renewed, all of them at once, not finished early.
    assert [kind for kind, _ in writes] == ["Deployment"] * 3 + ["ImageSource", "ImageSource/status"] * 3
    assert renewals[:3] == [ids[:1], ids[:2], ids]
    assert ids[1:] in renewals[3:]  # and, while the others are finished, those still waiting
    for follower in followers:
        row = Resource.objects.get(pk=follower.pk)
        assert (row.current_digest, row.claim_token, row.claimed_until) == (digest(2), "", None)


def test_renewing_claims_moves_their_leases_and_names_those_taken_meanwhile(dev, staging, make_resource, clusters,
                                                                           monkeypatch, settings):
    from environments.models import Resource
    from promotions import reconcile

    web, followers = _published_twice(dev, staging, make_resource, 2)
    kept, taken = followers
    steps = {f.pk: reconcile.reconcile_steps(f.pk) for f in followers}
    claims = {pk: next(step) for pk, step in steps.items()}  # each holds its claim, its Deployment applied
    assert {pk: held.token for pk, held in claims.items()} == dict(
        Resource.objects.filter(pk__in=claims).values_list("pk", "claim_token"))
    before = Resource.objects.get(pk=kept.pk).claimed_until
    Resource.objects.filter(pk=taken.pk).update(claim_token="another-worker")  # its lease ran out; taken over
    settings.HOIST_RECONCILE_LEASE_S = 60
    assert reconcile.renew(claims) == {taken.pk}
    assert Resource.objects.get(pk=kept.pk).claimed_until > before
    assert Resource.objects.get(pk=taken.pk).claim_token == "another-worker"
    assert (claims[kept.pk].lost, claims[taken.pk].lost) == (False, True)
    writes = _writes(monkeypatch)
    assert reconcile._run(steps[taken.pk]) is None  # it stops: whoever holds it now records
    assert writes == []
    assert reconcile._run(steps[kept.pk]) is not None
    assert [kind for kind, _ in writes] == ["ImageSource", "ImageSource/status"]
    rows = {r.pk: r for r in Resource.objects.filter(pk__in=claims)}
    assert (rows[kept.pk].current_digest, rows[kept.pk].claim_token) == (digest(2), "")
    assert (rows[taken.pk].current_digest, rows[taken.pk].claim_token) == (digest(1), "another-worker")


def test_renewing_no_claims_asks_nothing(db, django_assert_num_queries):
    from promotions import reconcile

    with django_assert_num_queries(0):
        assert reconcile.renew({}) == set()


def test_a_chunk_past_its_time_queues_what_it_has_not_started(dev, staging, make_resource, clusters, monkeypatch):
    from environments.models import Resource

    web, followers = _published_twice(dev, staging, make_resource, 3)
    queued = []
    monkeypatch.setattr(tasks, "_budget", lambda: 0)  # spent as soon as it starts
    monkeypatch.setattr(tasks, "async_task", lambda name, *args, **kwargs: queued.append((name, args, kwargs)))
    tasks.reconcile_resources([f.pk for f in followers], True)
    rows = {r.name: r for r in Resource.objects.filter(pk__in=[f.pk for f in followers])}
    assert rows["app0"].current_digest == digest(2)  # a share always starts one
    assert rows["app1"].current_digest == rows["app2"].current_digest == digest(1)
    assert queued == [("promotions.tasks.reconcile_resources", ([rows["app1"].pk, rows["app2"].pk], True),
                       {"group": "drift"})]


def test_the_budget_is_a_third_of_the_task_time_limit(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 300}
    assert tasks._budget() == 100
    settings.Q_CLUSTER = {key: value for key, value in settings.Q_CLUSTER.items() if key != "timeout"}
    assert tasks._budget() == float("inf")


def test_one_reconcile_failing_in_its_second_step_leaves_the_others_be(dev, staging, make_resource, clusters, monkeypatch):
    from environments.models import Resource
    from promotions import reconcile

    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    followers = [make_resource(staging, f"app{n}", upstream=web) for n in range(3)]
    tasks.reconcile_resources([web.pk])
    real = reconcile.publish_status

    def broken(kube, resource, *args, **kwargs):
        if resource.name == "app1":
            raise RuntimeError("a bug")
        return real(kube, resource, *args, **kwargs)

    monkeypatch.setattr(reconcile, "publish_status", broken)
    tasks.reconcile_resources([f.pk for f in followers])
    rows = {r.name: r for r in Resource.objects.filter(pk__in=[f.pk for f in followers])}
    assert rows["app0"].current_digest == rows["app2"].current_digest == digest(1)
    assert rows["app1"].current_digest == "" and rows["app1"].claim_token == ""  # released, left to retry
    assert "a bug" in rows["app1"].message


def test_a_change_made_while_a_reconcile_waits_for_its_second_step_is_reconciled_in_place(
        dev, staging, make_resource, clusters, monkeypatch):
    from environments.models import Resource
    from promotions import queue, reconcile

    web, (follower,) = _published_twice(dev, staging, make_resource, 1)
    queued = []
    monkeypatch.setattr(queue, "enqueue_reconcile", lambda resource_id, **kwargs: queued.append(resource_id))
    steps = reconcile.reconcile_steps(follower.pk, batch=reconcile.Batch())  # the batch keeps what it read
    next(steps)  # its Deployment carries digest 2; the rest waits
    assert image_of(clusters["a"], "shop-staging", "app0").endswith(digest(2))
    services.artifact_publish(resource=web, digest=digest(3))
    reconcile.reconcile_resource(web.pk)
    assert Resource.objects.get(pk=follower.pk).dirty_at is not None  # held: the holder must see to it
    assert reconcile._run(steps) is not None
    row = Resource.objects.get(pk=follower.pk)
    assert (row.current_digest, row.claim_token, row.dirty_at) == (digest(3), "", None)
    assert image_of(clusters["a"], "shop-staging", "app0").endswith(digest(3))
    assert follower.pk not in queued  # not through the queue


def test_a_share_starts_again_what_changed_while_it_held_it(dev, staging, make_resource, clusters, monkeypatch):
    from environments.models import Resource
    from promotions import queue, reconcile

    web, followers = _published_twice(dev, staging, make_resource, 3)
    queued, real = [], reconcile.publish_status
    monkeypatch.setattr(queue, "enqueue_reconcile", lambda resource_id, **kwargs: queued.append(resource_id))

    def publish_meanwhile(kube, resource, *args, **kwargs):
        if resource.name == "app0" and not Resource.objects.filter(pk=web.pk, current_digest=digest(3)).exists():
            services.artifact_publish(resource=web, digest=digest(3))  # while all three are held
            reconcile.reconcile_resource(web.pk)
        return real(kube, resource, *args, **kwargs)

    monkeypatch.setattr(reconcile, "publish_status", publish_meanwhile)
    writes = _writes(monkeypatch)
    tasks.reconcile_resources([f.pk for f in followers])
    followers_writes = [(kind, name) for kind, name in writes if name != "web"]
    # Every Deployment on digest 2 first; each started again on digest 3 as soon as it is
    # finished; then the rest of those.
    assert [kind for kind, _ in followers_writes] == (["Deployment"] * 3 + ["ImageSource", "ImageSource/status", "Deployment"] * 3
                                                      + ["ImageSource", "ImageSource/status"] * 3)
    for follower in followers:
        row = Resource.objects.get(pk=follower.pk)
        assert (row.current_digest, row.claim_token, row.dirty_at) == (digest(3), "", None)
        assert image_of(clusters["a"], "shop-staging", follower.name).endswith(digest(3))
    assert not set(queued) & {f.pk for f in followers}


def test_a_reconcile_whose_claim_was_taken_while_it_waited_stops(dev, staging, make_resource, clusters, monkeypatch, settings):
    from environments.models import Resource
    from promotions import reconcile

    web, (follower,) = _published_twice(dev, staging, make_resource, 1)
    steps = reconcile.reconcile_steps(follower.pk)
    next(steps)
    Resource.objects.filter(pk=follower.pk).update(claim_token="another-worker")  # its lease ran out; taken over
    settings.HOIST_RECONCILE_LEASE_S = 0
    writes = _writes(monkeypatch)
    assert reconcile._run(steps) is None
    assert writes == []  # no ImageSource written by a worker that no longer holds the resource
    row = Resource.objects.get(pk=follower.pk)
    assert (row.current_digest, row.claim_token) == (digest(1), "another-worker")  # the new holder records


@pytest.mark.parametrize("count, sizes", [
    (3, [1, 1, 1]),
    (100, [25] * 4),  # one chunk per worker
    (1000, [250] * 4),
    (2500, [250] * 10),  # at most MAX_CHUNK: more tasks, for more worker machines
])
def test_a_fan_out_is_cut_into_one_chunk_per_worker(settings, count, sizes):
    from promotions import queue

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 4}
    cut = queue.chunks(list(range(count)))
    assert [len(chunk) for chunk in cut] == sizes
    assert [pk for chunk in cut for pk in chunk] == list(range(count))


def test_a_share_whose_waiting_claim_is_taken_stops_that_one_and_finishes_the_rest(dev, staging, make_resource, clusters,
                                                                                   monkeypatch, settings):
    from environments.models import Resource
    from promotions import reconcile

    web, followers = _published_twice(dev, staging, make_resource, 3)
    settings.HOIST_RECONCILE_LEASE_S = 0.001  # each start renews what waits
    real = reconcile.renew

    def taken_after_the_first(claims):
        if len(claims) == 2:  # app0 and app1 wait: app0's lease ran out and another worker took it
            Resource.objects.filter(pk=followers[0].pk).update(claim_token="another-worker")
        return real(claims)

    monkeypatch.setattr(reconcile, "renew", taken_after_the_first)
    writes = _writes(monkeypatch)
    tasks.reconcile_resources([f.pk for f in followers])
    # app0 wrote its Deployment before it lost the claim, nothing after; the others finished.
    assert writes == [("Deployment", "app0"), ("Deployment", "app1"), ("Deployment", "app2"),
                      ("ImageSource", "app1"), ("ImageSource/status", "app1"),
                      ("ImageSource", "app2"), ("ImageSource/status", "app2")]
    rows = {r.name: r for r in Resource.objects.filter(pk__in=[f.pk for f in followers])}
    assert (rows["app0"].current_digest, rows["app0"].claim_token) == (digest(1), "another-worker")
    assert rows["app1"].current_digest == rows["app2"].current_digest == digest(2)
