"""A worker's chunk runs on the process's own reconcile threads, which keep their connections."""

import pytest
from django.db import connection

from promotions import reconcile, tasks
from tests.fixtures.domain import digest

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="threads need PostgreSQL (SQLite runs a chunk on one)")


@pytest.mark.django_db(transaction=True)
def test_a_chunk_runs_on_the_pool_whose_threads_keep_their_connections(dev, staging, make_resource, clusters, monkeypatch,
                                                                    settings):
    settings.HOIST_RECONCILE_THREADS = 2
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    followers = [make_resource(staging, f"app{n}", upstream=web) for n in range(4)]
    reconcile.reconcile_resource(web.pk)
    seen = []
    real = reconcile.reconcile_steps

    def spy(resource_id, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            seen.append((tasks.threading.current_thread().name, cursor.fetchone()[0]))
        return (yield from real(resource_id, **kwargs))

    monkeypatch.setattr(reconcile, "reconcile_steps", spy)
    tasks.reconcile_resources([f.pk for f in followers])
    first = dict(seen)
    seen.clear()
    tasks.reconcile_resources([f.pk for f in followers])
    assert len(first) == 2 and all(name.startswith("reconcile") for name in first)
    assert dict(seen) == first  # the same threads, on the same database sessions
    for follower in followers:
        follower.refresh_from_db()
        assert follower.current_digest == digest(1)
    tasks._pool(2).submit(lambda: None).result()  # still usable


@pytest.mark.django_db(transaction=True)
def test_a_chunk_queued_from_a_share_runs_in_place(dev, staging, make_resource, clusters, monkeypatch, settings):
    """django-q's sync mode runs a task where it is queued: from a pool thread, the pool must not
    be waited on (with every thread waiting, nothing would run)."""
    settings.HOIST_RECONCILE_THREADS = 2
    web = make_resource(dev, "web", image="registry.a.example/shop/web@" + digest(1))
    followers = [make_resource(staging, f"app{n}", upstream=web) for n in range(4)]
    reconcile.reconcile_resource(web.pk)
    nested = []
    real = reconcile.reconcile_steps

    def chunk_inside(resource_id, **kwargs):
        if not nested:
            nested.append(tasks.threading.current_thread().name)
            tasks.reconcile_resources([f.pk for f in followers[2:]])  # would need both threads
        return (yield from real(resource_id, **kwargs))

    monkeypatch.setattr(reconcile, "reconcile_steps", chunk_inside)
    tasks.reconcile_resources([f.pk for f in followers])
    assert nested and nested[0].startswith("reconcile")
    for follower in followers:
        follower.refresh_from_db()
        assert follower.current_digest == digest(1)
