"""Tag watching: track latest where no registry webhook comes.

ECR, Artifact Registry and many private registries send no push
notifications, so Hoist looks itself: every tag an image-source resource
names is one `TagWatch`, checked with one `HEAD` of the manifest per interval
(a HEAD costs no Docker Hub pull) however many resources name it. When
`Docker-Content-Digest` differs from what the last check saw, the new digest
is published exactly as a push notification would publish it
(`promotions.tags`: same service, audit and de-duplication).

Pacing. Each watch is due at `next_check_at` and, once checked, due again one
interval (per registry, default HOIST_TAG_WATCH_INTERVAL_S) after it was
*due*, not after it ran, so N tags cost exactly N × 60 / interval requests a
minute. New watches start at a phase spread over the interval by their name,
so a thousand tags don't all fall due in the same second.

Running. `Watcher` runs in the observer process (the leader's). It keeps a few
threads per registry host: a host that never answers holds only its own
threads, the others go on. A thread claims a batch of its host's due watches
under a lease (a conditional update, so two watchers never check one twice),
reserves the batch's requests from the host's shared limiter
(`promotions.limits`), and checks them at the pace that allows. Every HEAD
also passes the host's breaker and concurrency slots (`mirror.calling`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from datetime import datetime, timedelta

from django.db import connections
from django.db.models import Q
from django.utils import timezone

from environments import selectors
from environments.models import Artifact, Resource, SourceType, TagWatch

from . import limits, mirror, tags
from .registry import Deferred, RegistryError

log = logging.getLogger(__name__)

# A watch's HEAD gets this long in all; a registry that needs more is failing.
CHECK_DEADLINE_S = 10.0
# A claimed batch must be checked within this (else another watcher takes it over).
CLAIM_LEASE_S = 60.0
# How often the watcher brings its watches in line with the resources (changes also do it at once).
SYNC_EVERY_S = 30.0
# A host thread with nothing due sleeps this long between looks.
IDLE_POLL_S = 0.2


Key = tuple[str, str, str]  # (host, repository, tag)


key_of = selectors.watched_tag


def _phase(key: Key, interval: float) -> float:
    """Seconds into the interval at which this tag is checked: spread evenly, and stable."""
    digest = hashlib.sha256("\0".join(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval


def _new_watch(key: Key, now: datetime) -> TagWatch:
    interval = limits.limits_for(key[0]).watch_interval_s
    return TagWatch(host=key[0][:255], repository=key[1][:255], tag=key[2][:128],
                    next_check_at=now + timedelta(seconds=_phase(key, interval)))


def ensure(resource: Resource) -> None:
    """A resource was written: make sure the tag it follows is watched (records only, no registry call)."""
    if resource.source_type != SourceType.IMAGE:
        return
    key = key_of(resource.image)
    if key is None:
        return
    if not TagWatch.objects.filter(host=key[0], repository=key[1], tag=key[2]).exists():
        TagWatch.objects.bulk_create([_new_watch(key, timezone.now())], ignore_conflicts=True)


def sync() -> tuple[int, int]:
    """Watch exactly the tags image-source resources name now; returns (added, removed)."""
    wanted: set[Key] = set()
    for image in Resource.objects.filter(source_type=SourceType.IMAGE).exclude(image="").values_list("image", flat=True):
        key = key_of(image)
        if key is not None:
            wanted.add((key[0][:255], key[1][:255], key[2][:128]))
    have = {(h, r, t): pk for pk, h, r, t in TagWatch.objects.values_list("pk", "host", "repository", "tag")}
    now = timezone.now()
    missing = [_new_watch(key, now) for key in wanted - have.keys()]
    TagWatch.objects.bulk_create(missing, ignore_conflicts=True, batch_size=500)
    unused = [pk for key, pk in have.items() if key not in wanted]
    for start in range(0, len(unused), 500):
        TagWatch.objects.filter(pk__in=unused[start:start + 500]).delete()
    return len(missing), len(unused)


def _unclaimed(now: datetime) -> Q:
    return Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)


def due_hosts(now: datetime | None = None) -> list[str]:
    now = now or timezone.now()
    return list(TagWatch.objects.filter(_unclaimed(now), next_check_at__lte=now)
                .order_by().values_list("host", flat=True).distinct())


def claim(host: str, limit: int, now: datetime | None = None) -> list[TagWatch]:
    """Up to `limit` of `host`'s due watches, earliest first, claimed for this caller alone."""
    now = now or timezone.now()
    ids = list(TagWatch.objects.filter(_unclaimed(now), host=host, next_check_at__lte=now)
               .order_by("next_check_at").values_list("pk", flat=True)[:limit])
    if not ids:
        return []
    token = secrets.token_hex(8)
    TagWatch.objects.filter(_unclaimed(now), pk__in=ids).update(
        claimed_until=now + timedelta(seconds=CLAIM_LEASE_S), claim_token=token)
    return list(TagWatch.objects.filter(pk__in=ids, claim_token=token).order_by("next_check_at"))


def _next_due(watch: TagWatch, interval: float, now: datetime) -> datetime:
    """One interval after it was due (steady cadence); if it fell a whole interval behind,
    one interval from now (catching up must not turn into a burst)."""
    following = watch.next_check_at + timedelta(seconds=interval)
    return following if following > now else now + timedelta(seconds=interval)


def _record(watch: TagWatch, **fields) -> None:
    TagWatch.objects.filter(pk=watch.pk, claim_token=watch.claim_token).update(
        claimed_until=None, claim_token="", **fields)


def check(watch: TagWatch) -> list[dict]:
    """One HEAD of the watch's tag; publishes when it moved. Returns what was published."""
    interval = limits.limits_for(watch.host).watch_interval_s
    looked_at = timezone.now()
    reference = f"{watch.host}/{watch.repository}:{watch.tag}"
    try:
        digest = mirror.resolve(reference, deadline=CHECK_DEADLINE_S)
    except Deferred as exc:
        # Not called at all (breaker open, no slot, or its rate limit): not a check, just later.
        _record(watch, next_check_at=max(exc.retry_at, timezone.now() + timedelta(seconds=1)),
                last_error=exc.message[:2000])
        return []
    except RegistryError as exc:
        now = timezone.now()
        due = _next_due(watch, interval, now)
        if exc.retry_after:
            due = max(due, now + timedelta(seconds=exc.retry_after))
        _record(watch, checked_at=now, next_check_at=due, last_error=exc.message[:2000], checks=watch.checks + 1)
        return []
    now = timezone.now()
    first_look = not watch.digest
    moved = digest != watch.digest
    published: list[dict] = []
    if moved:
        outcome = tags.tag_moved(watch.host, watch.repository, watch.tag, digest, looked_at=looked_at,
                                 origin=Artifact.Origin.WATCH, actor_label=f"tag watch ({watch.host})",
                                 only_from_tag=first_look)
        published = outcome.published
    fields = {"digest": digest, "checked_at": now, "next_check_at": _next_due(watch, interval, now), "last_error": "",
              "checks": watch.checks + 1}
    if moved and not first_look:
        fields["changed_at"] = now
    _record(watch, **fields)
    if published:
        log.info("tag watch: %s moved to %s; published to %d resources", reference, digest, len(published))
    return published


def check_due(host: str | None = None, *, limit: int = 1000) -> int:
    """Check every due watch now, in this thread (tests, and a watcher catching up). Returns how many."""
    done = 0
    for each in ([host] if host else due_hosts()):
        for watch in claim(each, limit):
            check(watch)
            done += 1
    return done


class _HostThread(threading.Thread):
    """Checks one registry host's due watches, paced by the host's limiter."""

    def __init__(self, host: str, stop: threading.Event, number: int):
        super().__init__(name=f"tag-watch-{host}-{number}", daemon=True)
        self.host = host
        self.stop = stop
        self.last_busy = time.monotonic()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                if not self._one_batch():
                    if time.monotonic() - self.last_busy > 60:
                        return  # nothing due here for a minute: the watcher starts a thread again when needed
                    self.stop.wait(IDLE_POLL_S)
        except Exception:
            log.exception("tag watch thread for %s stopped", self.host)
        finally:
            connections.close_all()  # this thread's own

    def _one_batch(self) -> bool:
        rate = limits.limits_for(self.host).rate_per_s
        # About a second's worth at the host's rate: a batch never outlives its claim.
        batch = claim(self.host, max(1, min(50, int(rate))))
        if not batch:
            return False
        self.last_busy = time.monotonic()
        try:
            first = limits.reserve(self.host, len(batch), max_wait=CLAIM_LEASE_S / 2)
        except Deferred as exc:
            later = max(exc.retry_at, timezone.now() + timedelta(seconds=1))
            for watch in batch:
                _record(watch, next_check_at=later, last_error=exc.message[:2000])
            return True
        for n, watch in enumerate(batch):
            if self.stop.is_set():
                _record(watch, next_check_at=watch.next_check_at)  # give it back unchecked
                continue
            delay = first + n / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            try:
                with limits.prepaid(1):
                    check(watch)
            except Exception:  # one broken watch must not stop the host's others
                log.exception("tag watch of %s failed", watch)
                _record(watch, next_check_at=timezone.now() + timedelta(seconds=30), last_error="internal error")
        return True


class Watcher(threading.Thread):
    """The tag watcher: keeps the watches in line with the resources and a few threads per
    registry host that has watches due."""

    def __init__(self, stop: threading.Event | None = None, *, threads_per_host: int | None = None):
        super().__init__(name="tag-watcher", daemon=True)
        self.stop = stop or threading.Event()
        self.threads_per_host = threads_per_host
        self.hosts: dict[str, list[_HostThread]] = {}
        self._synced = 0.0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.tick()
                self.stop.wait(IDLE_POLL_S)
        finally:
            connections.close_all()  # this thread's own

    def tick(self) -> None:
        try:
            if time.monotonic() - self._synced > SYNC_EVERY_S:
                sync()
                self._synced = time.monotonic()
            for host in due_hosts():
                self._staff(host)
        except Exception:
            log.exception("tag watcher tick failed")

    def _staff(self, host: str) -> None:
        from django.conf import settings

        threads = [t for t in self.hosts.get(host, []) if t.is_alive()]
        wanted = self.threads_per_host or settings.HOIST_TAG_WATCH_THREADS
        concurrency = limits.limits_for(host).concurrency
        if concurrency:
            wanted = min(wanted, concurrency)
        while len(threads) < wanted:
            thread = _HostThread(host, self.stop, len(threads))
            thread.start()
            threads.append(thread)
        self.hosts[host] = threads

    def join_all(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for threads in self.hosts.values():
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        self.join(max(0.0, deadline - time.monotonic()))
