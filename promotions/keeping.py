"""Keep tags: nothing a resource runs, is pinned to or may roll back to disappears in clean-up.

Registry clean-up (retention policies, distribution's `garbage-collect --delete-untagged`)
deletes manifests no tag points at, and Hoist mirrors by digest, never by tag. So every digest
some resource needs (`environments.keeps.needs`: what it runs, its pin, its last
HOIST_KEEP_HEALTHY healthy digests) gets a tag of Hoist's own, `hoist-keep-<64 hex>`, in the
repository it is pulled from, when that repository is in the central registry or in a registry
whose `RegistryHost.protect` is on; anywhere else it is recorded as unprotected, with the reason.

- **Keeping** a digest reads its manifest and, for an index, every child's (distribution's
  garbage collection deletes the untagged children of a tagged index, distribution#3004),
  records the children, then PUTs each manifest's exact bytes under its own keep tag,
  children first.
- **Releasing** one nobody needs points its tags at `registry.PLACEHOLDER` (a registry can't
  delete a tag without deleting the manifest under it), except a child tag another kept
  index still needs.
- One `Keep` row per repository and digest, shared by every resource that needs it, records
  the outcome. A row already kept costs no registry call; once a day its tags are checked
  with one HEAD each, in case a retention rule or a person moved them.

Triggers: `sync()` on a schedule (every few minutes) does all of it; `keep_resource()` runs on
every change (a digest applied or healthy, a pin set) and only keeps, so what a change needs is
protected within seconds, and releasing waits for the schedule.

No locks, though keeps and syncs may overlap. A keep records the children before it tags and
records its result compare-and-set on the state it read; a release marks its rows released
(compare-and-set) before it moves any tag, and afterwards reads what is needed again and keeps
whatever became needed meanwhile (`_recheck`). A keep that starts after that second read finds
the row released and tags it again; one that started before it was seen by it. Either way the
last write to a needed tag is a keep.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Callable

from django.conf import settings
from django.utils import timezone

from environments import keeps
from environments.keeps import host_of, keep_tag
from environments.models import Keep, RegistryHost

from . import limits, mirror
from .registry import RegistryClient, RegistryError

log = logging.getLogger(__name__)

State = Keep.State
Key = tuple[str, str]  # (repository, digest)
VERIFY_EVERY = timedelta(days=1)
RELEASED_ROWS_KEPT_FOR = timedelta(days=30)


@dataclass
class Report:
    kept: int = 0  # digests tagged (newly, or again)
    released: int = 0  # digests whose tags now point at the placeholder
    verified: int = 0  # kept digests whose tags were checked in place
    unprotected: int = 0  # needed digests in registries Hoist may not push to
    failed: int = 0  # keeps and releases that failed: tried again next run

    def as_dict(self) -> dict:
        return asdict(self)


class _HostDown(Exception):
    """The host failed in a way every further call would too (no answer, 5xx, breaker open)."""


def sync() -> Report:
    """Keep what every resource needs, release what nobody needs, check kept tags once a day."""
    report = Report()
    wanted = _wanted(keeps.needs())
    moved = _work(_rows(wanted, everything=True), wanted, report, full=True)
    if moved:
        _recheck(moved, report)
    Keep.objects.filter(state=State.RELEASED, released_at__lt=timezone.now() - RELEASED_ROWS_KEPT_FOR).delete()
    if report.kept or report.released or report.failed:
        log.info("keep tags: %s", report.as_dict())
    return report


def keep_resource(resource_id: int) -> Report:
    """After a change: keep what this resource needs now. Nothing is released here."""
    report = Report()
    wanted = _wanted(keeps.needs([resource_id]))
    if wanted:
        _work(_rows(wanted, everything=False), wanted, report, full=False)
    return report


# --- the rows -------------------------------------------------------------------------------------


def _wanted(needs: dict[int, list[keeps.Need]]) -> dict[Key, list[str]]:
    wanted: dict[Key, list[str]] = {}
    for listed in needs.values():
        for need in listed:
            if need.repository:  # not copied anywhere yet: nothing to keep
                roles = wanted.setdefault(need.key, [])
                roles.extend(role for role in need.roles if role not in roles)
    return wanted


def _rows(wanted: dict[Key, list[str]], *, everything: bool) -> list[Keep]:
    """The rows of every wanted digest (created, pending, when missing) and, with `everything`,
    every row not released yet (the candidates for release)."""
    def read(keys) -> dict[Key, Keep]:
        found = Keep.objects.filter(repository__in={r for r, _ in keys}, digest__in={d for _, d in keys})
        return {(row.repository, row.digest): row for row in found if (row.repository, row.digest) in keys}

    rows = {(row.repository, row.digest): row for row in Keep.objects.exclude(state=State.RELEASED)} if everything else {}
    absent = {key for key in wanted if key not in rows}
    if absent:
        rows.update(read(absent))  # released ones needed again, and new ones
    missing = [Keep(repository=r, digest=d, tag=keep_tag(d)) for r, d in absent if (r, d) not in rows]
    if missing:
        Keep.objects.bulk_create(missing, ignore_conflicts=True)  # another run may create them at the same time
        rows.update(read({(row.repository, row.digest) for row in missing}))
    return list(rows.values())


def _key(row: Keep) -> Key:
    return row.repository, row.digest


def _protected_hosts(hosts: set[str]) -> set[str]:
    """The central registry, and registries an operator let Hoist push keep tags to."""
    allowed = set(RegistryHost.objects.filter(host__in=hosts, protect=True).values_list("host", flat=True))
    if settings.HOIST_CENTRAL_REGISTRY:
        allowed.add(host_of(settings.HOIST_CENTRAL_REGISTRY))
    return allowed


def _set(row: Keep, expected: str, **fields) -> bool:
    """Record compare-and-set: only if the row is still in the state this run read."""
    fields.setdefault("checked_at", timezone.now())
    done = Keep.objects.filter(pk=row.pk, state=expected).update(**fields)
    if done:
        for name, value in fields.items():
            setattr(row, name, value)
    return bool(done)


# --- the work -------------------------------------------------------------------------------------


def _work(rows: list[Keep], wanted: dict[Key, list[str]], report: Report, *, full: bool) -> dict[str, set[str]]:
    """Keep, check and (with `full`) release, host by host: a host that fails costs only its own
    rows. Returns the tags released, as digests by repository."""
    by_host: dict[str, list[Keep]] = defaultdict(list)
    for row in rows:
        by_host[host_of(row.repository)].append(row)
    allowed = _protected_hosts(set(by_host))
    moved: dict[str, set[str]] = defaultdict(set)
    for host, host_rows in sorted(by_host.items()):
        if host not in allowed:
            _unprotected(host, host_rows, wanted, report, full=full)
            continue
        try:
            _work_on_host(host, host_rows, wanted, report, moved, full=full)
        except _HostDown:
            pass  # recorded on its rows; the next run tries again
    return moved


def _work_on_host(host: str, rows: list[Keep], wanted: dict[Key, list[str]], report: Report,
                  moved: dict[str, set[str]], *, full: bool) -> None:
    due = timezone.now() - VERIFY_EVERY
    to_keep = [row for row in rows if _key(row) in wanted and row.state != State.KEPT]
    to_check = [row for row in rows if full and _key(row) in wanted and row.state == State.KEPT
                and (row.checked_at is None or row.checked_at < due)]
    to_release = [row for row in rows if full and _key(row) not in wanted and row.state != State.RELEASED]
    for done, row in enumerate(to_keep):
        try:
            _keep(host, row, report)
        except _HostDown as down:
            # Say why on every row this run would have kept; the next run tries again.
            for untried in to_keep[done + 1:]:
                _set(untried, untried.state, state=State.FAILED, detail=f"Not kept yet: {down}"[:2000])
            raise
    for row in to_check:
        _check(host, row, report)
    if to_release:
        _release(host, to_release, rows, wanted, report, moved)


def _call(host: str, row: Keep, report: Report, action: Callable[[RegistryClient], None], *, failing: str,
          expected: str) -> bool:
    """One call to `host` (its breaker, its deadline) for one row. A failure is recorded on the
    row (`failing` says what did not happen) and, when the host itself is the trouble, stops
    the rest of this host's work for this run."""
    try:
        with mirror.calling(host) as registry:
            action(registry)
        return True
    except RegistryError as exc:
        report.failed += 1
        missing = exc.status == 404 and failing == "kept"
        if missing:  # a pin copied a moment later, or clean-up got there first
            state, detail = State.PENDING, f"Not in {row.repository}: {exc}. Kept once it is copied there."
        else:
            state, detail = State.FAILED, f"Not {failing} yet: {exc}"
        _set(row, expected, state=state, detail=detail[:2000])
        log.warning("keep tag for %s@%s not %s: %s", row.repository, row.digest[:19], failing, exc)
        if exc.retryable:
            raise _HostDown(str(exc)) from None
        return False


def _keep(host: str, row: Keep, report: Report, *, detail: str = "") -> None:
    expected = row.state

    def tag(registry: RegistryClient) -> None:
        tree = registry.manifest_tree(row.repository, row.digest)
        children = [manifest.digest for manifest in tree[:-1]]
        if children != row.children:
            # Recorded before any tag is written: a release checking again after it moved tags
            # then sees these children as needed (see the module docstring).
            Keep.objects.filter(pk=row.pk).update(children=children)
            row.children = children
        for manifest in tree:  # children first: an index is never tagged while its children are not
            registry.put_tag(row.repository, keep_tag(manifest.digest), manifest)

    if _call(host, row, report, tag, failing="kept", expected=expected):
        now = timezone.now()
        kept_at = row.kept_at if expected == State.KEPT and row.kept_at else now
        if _set(row, expected, state=State.KEPT, detail=detail, kept_at=kept_at, released_at=None):
            report.kept += 1
            log.info("kept %s@%s (tag %s, %d children)", row.repository, row.digest[:19], row.tag, len(row.children))


def _check(host: str, row: Keep, report: Report) -> None:
    """Once a day: are the row's tags still where Hoist put them? One HEAD per tag."""
    in_place = []

    def look(registry: RegistryClient) -> None:
        in_place.append(all(registry.tag_target(row.repository, keep_tag(d)) == d for d in [*row.children, row.digest]))

    if not _call(host, row, report, look, failing="checked", expected=State.KEPT):
        return
    if in_place[0]:
        report.verified += 1
        _set(row, State.KEPT)
        return
    log.warning("a keep tag of %s@%s was moved or deleted outside Hoist: tagging it again", row.repository, row.digest[:19])
    _keep(host, row, report, detail="Its keep tag had been moved or deleted outside Hoist (a retention rule that "
                                    "does not exclude ^hoist-keep-?); Hoist tagged it again.")


def _release(host: str, to_release: list[Keep], rows: list[Keep], wanted: dict[Key, list[str]], report: Report,
             moved: dict[str, set[str]]) -> None:
    # Tags still needed in each repository: every wanted digest, and every child of a wanted index.
    needed: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if _key(row) in wanted:
            needed[row.repository].add(row.digest)
            needed[row.repository].update(row.children)
    for row in to_release:
        # Marked first: a keep that starts now finds it released and tags it again.
        if not _set(row, row.state, state=State.RELEASED, released_at=timezone.now(), detail=""):
            continue  # another run changed it meanwhile
        tags = [d for d in [row.digest, *row.children] if d not in needed[row.repository]]

        def point_away(registry: RegistryClient, tags=tags, row=row) -> None:
            for digest in tags:
                registry.put_placeholder(row.repository, keep_tag(digest))
                moved[row.repository].add(digest)

        if _call(host, row, report, point_away, failing="released", expected=State.RELEASED):
            report.released += 1
            log.info("released %s@%s (%d tags moved to the placeholder)", row.repository, row.digest[:19], len(tags))


def _recheck(moved: dict[str, set[str]], report: Report) -> None:
    """After moving tags: keep again whatever is needed now and lost a tag (needed since this
    run read desired state, or a child of an index kept meanwhile)."""
    wanted = _wanted(keeps.needs())
    keys = [key for key in wanted if key[0] in moved]
    if not keys:
        return
    rows = Keep.objects.filter(repository__in={r for r, _ in keys}, digest__in={d for _, d in keys})
    for row in rows:
        lost = moved[row.repository]
        if _key(row) in wanted and (row.digest in lost or lost.intersection(row.children)):
            try:
                _keep(host_of(row.repository), row, report)
            except _HostDown:
                continue


def _unprotected(host: str, rows: list[Keep], wanted: dict[Key, list[str]], report: Report, *, full: bool) -> None:
    limits.ensure_row(host)  # listed on the Registries page, where an operator can turn "protect" on
    reason = (f"Not protected: {host} is not the central registry, and Hoist pushes keep tags there only when "
              "that registry's “protect” setting is on (the Registries page, the admin or the API; Hoist needs push "
              "credentials there). Until then that registry's own clean-up may delete this digest.")
    for row in rows:
        if _key(row) in wanted:
            report.unprotected += 1
            if row.state != State.UNPROTECTED or row.detail != reason:
                _set(row, row.state, state=State.UNPROTECTED, detail=reason)
        elif full and row.kept_at is None and row.state in (State.PENDING, State.UNPROTECTED):
            Keep.objects.filter(pk=row.pk, state=row.state).delete()  # never tagged: nothing to release
