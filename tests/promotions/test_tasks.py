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
