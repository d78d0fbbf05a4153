"""Several workers at once (DESIGN guarantee 8): claims and compare-and-set, not luck, keep reconcile correct.

A reconcile that finds the resource claimed by another worker steps aside;
the holder, when it releases, sees the change made meanwhile and queues
the resource again. Here the queue runs tasks at once (django-q sync), as
workers would pick them up.
"""

import threading

import pytest
from django.db import connection

from environments import services
from promotions import reconcile
from promotions.models import Promotion
from tests.fixtures.domain import digest

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL (CI runs it)")


def run_in_threads(target, count):
    errors = []

    def work():
        try:
            target()
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_resource_apply_once(dev, staging, make_resource, clusters):
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    errors = run_in_threads(lambda: reconcile.reconcile_resource(web.pk), 4)
    assert errors == []
    assert Promotion.objects.filter(resource=web, status="healthy").count() == 1
    assert web.artifacts.count() == 1


@pytest.mark.django_db(transaction=True)
def test_parallel_publishes_leave_every_dependant_on_the_latest(dev, staging, qa, make_resource, clusters, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(0))
    followers = [make_resource(staging, upstream=web), make_resource(qa, upstream=web)]
    reconcile.reconcile_resource(web.pk)
    counter = iter(range(1, 1000))
    lock = threading.Lock()

    def publish_and_reconcile():
        with lock:
            n = next(counter)
        services.artifact_publish(resource=web, digest=digest(n))
        reconcile.reconcile_resource(web.pk)
        for follower in followers:
            reconcile.reconcile_resource(follower.pk)

    assert run_in_threads(publish_and_reconcile, 8) == []
    latest = services.latest_artifact(web)
    # Whatever order the threads ran in, the one that published last reconciled after
    # its commit, so everyone ends on the last publish and nobody went back.
    for resource in [web, *followers]:
        resource.refresh_from_db()
        assert resource.current_digest == latest.digest
    sequences = list(web.artifacts.values_list("sequence", flat=True))
    assert len(sequences) == len(set(sequences)) == 9
