"""Issue 13 part 1: tag watching for registries that send no webhooks, and the limiter per registry host.

Real docker-registry instances with notifications off, behind a counting
proxy (sandbox.registry_proxy) so requests are counted on the registry's side
of the wire; a black hole for a registry that never answers.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from environments.models import Artifact, RegistryHost, Resource, TagWatch
from projects.models import AuditEntry
from promotions import limits, watching
from promotions.models import TagHead
from promotions.registry import Deferred
from sandbox.registry_proxy import RegistryProxy
from tests.fixtures.registry import make_image

pytestmark = pytest.mark.django_db(transaction=True)
# The watcher's threads write concurrently: SQLite locks the whole database per writer.
threads = pytest.mark.skipif(connection.vendor != "postgresql", reason="threads need PostgreSQL's row-level concurrency")


@pytest.fixture
def proxy(registry_server):
    front = RegistryProxy(registry_server.url).start()
    yield front
    front.stop()


def ref_via(proxy, registry, tag="main", name="app"):
    return f"{proxy.host}/{registry.repo(name)}:{tag}"


def due_now():
    TagWatch.objects.update(next_check_at=timezone.now() - timedelta(seconds=1))


def tune(host, **fields):
    """Set a registry's limits as an operator would in the admin (bypassing the 5 s minimum for speed)."""
    RegistryHost.objects.update_or_create(host=host, defaults=fields)
    limits.forget()


@pytest.fixture
def watcher():
    running = []

    def start(**kwargs):
        w = watching.Watcher(**kwargs)
        w.start()
        running.append(w)
        return w

    yield start
    for w in running:
        w.stop.set()
        w.join_all(timeout=15)


def wait_for(predicate, timeout=15.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


# --- which tags are watched -------------------------------------------------------------------


def test_a_resource_given_by_tag_is_watched_once_per_tag(dev, staging, make_resource):
    make_resource(dev, "web", image="registry.example.com/shop/web:main")
    make_resource(staging, "web", image="registry.example.com/shop/web:main")
    make_resource(dev, "api", image="registry.example.com/shop/api")  # no tag: latest
    make_resource(dev, "pinned", image="registry.example.com/shop/web@sha256:" + "a" * 64)
    assert sorted(TagWatch.objects.values_list("repository", "tag")) == [("shop/api", "latest"), ("shop/web", "main")]


def test_sync_drops_tags_nobody_follows_and_spreads_new_ones_over_the_interval(dev, make_resource, settings):
    web = make_resource(dev, "web", image="registry.example.com/shop/web:main")
    Resource.objects.filter(pk=web.pk).update(image="registry.example.com/shop/web:v2")  # as if edited elsewhere
    for n in range(40):
        make_resource(dev, f"svc-{n}", image=f"registry.example.com/shop/svc-{n}:main")
    added, removed = watching.sync()
    assert (added, removed) == (1, 1)
    assert not TagWatch.objects.filter(tag="main", repository="shop/web").exists()
    offsets = sorted((w.next_check_at - w.created_at).total_seconds() for w in TagWatch.objects.all())
    interval = settings.HOIST_TAG_WATCH_INTERVAL_S
    assert 0 <= offsets[0] and offsets[-1] <= interval + 1
    assert offsets[-1] - offsets[0] > interval / 2  # spread, not all due in the same second


def test_a_bad_image_reference_is_not_watched(dev, make_resource):
    assert watching.key_of("not a reference!") is None
    assert watching.key_of("registry.example.com/shop/web@sha256:" + "b" * 64) is None
    assert watching.key_of("registry.example.com/shop/web") == ("registry.example.com", "shop/web", "latest")


# --- a check -----------------------------------------------------------------------------------


def test_a_push_is_published_by_the_next_check_like_a_webhook_push(dev, staging, make_resource, registry, proxy):
    first = registry.push(make_image(seed=1), tag="main")
    web = make_resource(dev, "web", image=ref_via(proxy, registry))
    due_now()
    assert watching.check_due() == 1  # first look: the resource had nothing from this tag yet
    assert Artifact.objects.get(resource=web).digest == first

    second = registry.push(make_image(seed=2), tag="main")
    due_now()
    watching.check_due()
    latest = Artifact.objects.filter(resource=web).order_by("-sequence").first()
    assert (latest.digest, latest.origin, latest.tag) == (second, "watch", "main")
    watch = TagWatch.objects.get()
    assert watch.digest == second and watch.changed_at is not None and watch.last_error == ""
    entry = AuditEntry.objects.filter(action="artifact.publish").order_by("-id").first()
    assert "tag watch" in entry.actor_label

    due_now()
    watching.check_due()  # nothing moved: nothing published
    assert Artifact.objects.filter(resource=web).count() == 2


def test_the_first_look_does_not_override_a_digest_published_by_hand(dev, make_resource, registry, proxy):
    registry.push(make_image(seed=1), tag="main")
    web = make_resource(dev, "web", image=ref_via(proxy, registry))
    by_hand = registry.push(make_image(seed=3))
    from environments import services

    services.artifact_publish(resource=web, digest=by_hand, repository=f"{proxy.host}/{registry.repo()}")
    due_now()
    watching.check_due()
    assert Artifact.objects.filter(resource=web).order_by("-sequence").first().digest == by_hand


def test_a_watch_never_publishes_what_a_webhook_already_moved_past(dev, make_resource, registry, proxy):
    """The HEAD saw D1, but a webhook said D2 after the HEAD started: D1 is older news."""
    d1 = registry.push(make_image(seed=1), tag="main")
    web = make_resource(dev, "web", image=ref_via(proxy, registry))
    due_now()
    watching.check_due()
    d2 = registry.push(make_image(seed=2), tag="main")
    looked_at = timezone.now()
    from promotions import tags

    tags.tag_moved(proxy.host, registry.repo(), "main", d2, pushed_at=timezone.now(), origin="webhook", actor_label="hook")
    outcome = tags.tag_moved(proxy.host, registry.repo(), "main", d1, looked_at=looked_at, origin="watch", actor_label="w")
    assert outcome.stale
    assert Artifact.objects.filter(resource=web).order_by("-sequence").first().digest == d2
    assert TagHead.objects.get().digest == d2


def test_a_missing_tag_is_an_error_on_the_watch_not_a_publish(dev, make_resource, registry, proxy):
    web = make_resource(dev, "web", image=ref_via(proxy, registry, tag="never-pushed"))
    due_now()
    watching.check_due()
    watch = TagWatch.objects.get()
    assert "not found" in watch.last_error and watch.checked_at is not None
    assert watch.next_check_at > timezone.now()
    assert not Artifact.objects.filter(resource=web).exists()


@threads
def test_two_resources_on_one_tag_cost_one_head_per_interval(dev, staging, make_resource, registry, proxy, watcher):
    registry.push(make_image(seed=1), tag="main")
    make_resource(dev, "web", image=ref_via(proxy, registry))
    make_resource(staging, "web", image=ref_via(proxy, registry))
    tune(proxy.host, watch_interval_s=1)
    due_now()
    watcher()
    started = time.time()
    time.sleep(3.5)
    heads = proxy.count("HEAD", since=started, contains="/manifests/main")
    assert 3 <= heads <= 5  # one per second for one tag, not one per resource


@threads
def test_a_push_is_detected_within_the_interval_plus_a_second(dev, make_resource, registry, proxy, watcher):
    registry.push(make_image(seed=1), tag="main")
    web = make_resource(dev, "web", image=ref_via(proxy, registry))
    tune(proxy.host, watch_interval_s=2)
    due_now()
    watcher()
    assert wait_for(lambda: TagWatch.objects.filter(checks__gte=1).exists())
    pushed = registry.push(make_image(seed=2), tag="main")
    at = time.monotonic()
    assert wait_for(lambda: Artifact.objects.filter(resource=web, digest=pushed).exists(), timeout=10)
    assert time.monotonic() - at <= 2 + 1


# --- the limiter ------------------------------------------------------------------------------


def test_reservations_from_everyone_add_up_to_the_hosts_rate(db):
    tune("registry.example.com", rate_per_s=5)
    firsts = [limits.reserve("registry.example.com", 1, max_wait=60) for _ in range(10)]
    gaps = [b - a for a, b in zip(firsts, firsts[1:])]
    # A second's worth (5) may go at once; after that one every 0.2 s.
    assert firsts[4] - firsts[0] < 0.1
    assert all(abs(gap - 0.2) < 0.05 for gap in gaps[5:])
    row = RegistryHost.objects.get(host="registry.example.com")
    assert row.minute_requests == 10


def test_a_call_that_would_wait_too_long_is_put_off_and_reserves_nothing(db):
    tune("registry.example.com", rate_per_s=1)
    limits.reserve("registry.example.com", 5, max_wait=60)
    before = RegistryHost.objects.get(host="registry.example.com").paced_until
    with pytest.raises(Deferred) as caught:
        limits.reserve("registry.example.com", 1, max_wait=0.5)
    assert "limit of 1 requests per second" in caught.value.message
    assert caught.value.retry_at > timezone.now()
    assert RegistryHost.objects.get(host="registry.example.com").paced_until == before


def test_a_429_with_retry_after_is_honoured_by_every_use_of_the_host(dev, make_resource, registry, proxy):
    registry.push(make_image(seed=1), tag="main")
    registry.push(make_image(seed=2), tag="other")
    make_resource(dev, "web", image=ref_via(proxy, registry))
    make_resource(dev, "api", image=ref_via(proxy, registry, tag="other"))
    proxy.answer_next(1, 429, {"Retry-After": "2", "Content-Type": "application/json"},
                      b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}')
    due_now()
    started = time.time()
    watching.check_due()  # the first HEAD is told to wait 2 s: nothing goes to the host before then
    heads = proxy.times("HEAD")
    told_at = heads[0]
    assert len(heads) == 2 and heads[1] - told_at >= 2 - 0.05
    throttled = RegistryHost.objects.get(host=proxy.host).throttled_until
    assert abs(throttled.timestamp() - (told_at + 2)) < 0.5
    told = TagWatch.objects.get(tag="main")
    assert "429" in told.last_error and told.next_check_at >= throttled - timedelta(seconds=0.01)
    assert TagWatch.objects.get(tag="other").last_error == ""
    # A resolve for a publish by tag waits its turn too.
    proxy.answer_next(1, 429, {"Retry-After": "1"})
    from promotions import mirror

    with pytest.raises(Exception):
        mirror.resolve(ref_via(proxy, registry))
    before = time.time()
    assert mirror.resolve(ref_via(proxy, registry, tag="other"))
    assert proxy.times("HEAD")[-1] >= before + 0.9 - 0.05
    assert proxy.count("HEAD", since=started) == 4


@threads
def test_a_registry_that_never_answers_does_not_slow_the_others(dev, make_resource, registry, proxy, black_hole,
                                                                watcher, settings):
    settings.HOIST_REGISTRY_CONNECT_TIMEOUT_S = 1.0
    settings.HOIST_REGISTRY_READ_TIMEOUT_S = 1.0
    registry.push(make_image(seed=1), tag="main")
    make_resource(dev, "web", image=ref_via(proxy, registry))
    for n in range(6):
        make_resource(dev, f"dead-{n}", image=f"{black_hole.host}/shop/dead-{n}:main")
    tune(proxy.host, watch_interval_s=1)
    tune(black_hole.host, watch_interval_s=1)
    due_now()
    watcher()
    started = time.time()
    time.sleep(4.5)
    heads = proxy.count("HEAD", since=started, contains="/manifests/main")
    assert heads >= 4  # on schedule, whatever the black hole holds
    assert black_hole.max_open <= settings.HOIST_TAG_WATCH_THREADS
    dead = TagWatch.objects.filter(host=black_hole.host)
    assert all(w.last_error for w in dead if w.checks)


@threads
def test_the_leading_observer_runs_the_tag_watcher(dev, make_resource, registry, proxy):
    from promotions.observer import Observer

    registry.push(make_image(seed=1), tag="main")
    web = make_resource(dev, "web", image=ref_via(proxy, registry))
    due_now()
    observer = Observer(holder="test-observer", tick_s=0.1)
    thread = threading.Thread(target=observer.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: Artifact.objects.filter(resource=web, origin="watch").exists(), timeout=15)
        assert observer.tag_watcher is not None and observer.tag_watcher.is_alive()
    finally:
        observer.stop.set()
        thread.join(timeout=15)
    assert observer.tag_watcher is None
