"""What must survive registry clean-up, and whether it does: the read side of keep tags.

A resource needs, in the repository it pulls each one from:

- **running**: the digest it runs (`current_digest`, in `current_image`'s repository);
- **pinned**: the digest it is pinned to. Across clusters every digest of one upstream is
  mirrored to the same central path, so that is where the running digest lives; on one
  cluster, the upstream's own repository for that digest (as `reconcile.decide` pulls it);
- **rollback**: its last HOIST_KEEP_HEALTHY digests that ran healthy (its own Artifacts): a
  rollback, or a person pinning an older digest, takes one of these.

The engine (`promotions.keeping`) keeps each of them with a tag of Hoist's own, `keep_tag()`,
and records the outcome in a `Keep` row (one per repository and digest, shared by every resource
that needs it); `protection()` joins the two for the pages and the API. Reads only: a constant
number of queries for any number of resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from django.conf import settings
from django.db.models import F, QuerySet, Window
from django.db.models.functions import RowNumber

from .models import Artifact, Binding, Keep, Resource

RUNNING, PINNED, ROLLBACK = "running", "pinned", "rollback"
TAG_PREFIX = "hoist-keep-"
# A digest may run healthy in several publishes in a row (a rebuild of the same bytes): the last
# N distinct digests are looked for among this many times N healthy publishes.
WINDOW_FACTOR = 3


def keep_tag(digest: str) -> str:
    """`hoist-keep-<64 hex>`. The whole digest, not a prefix: the tag is then a function of the
    digest alone (two digests can never share one, so keeping one never moves the other's), a
    person or a retention rule can read the digest off it, and at 75 characters it is well
    within the 128 a tag may have."""
    return TAG_PREFIX + digest.removeprefix("sha256:")


def host_of(repository: str) -> str:
    return repository.split("/", 1)[0]


@dataclass
class Need:
    """One digest a resource needs kept, where it is pulled from ("" when not yet known: a pin
    not applied yet across clusters has not been copied anywhere)."""

    repository: str
    digest: str
    roles: list[str]

    @property
    def key(self) -> tuple[str, str]:
        return self.repository, self.digest


FIELDS = ("pk", "current_image", "current_digest", "binding", "pinned_digest", "promote_from_id",
          "environment__cluster_id", "promote_from__environment__cluster_id", "promote_from__current_image")


def needs(resources: Iterable[int] | Iterable[Resource] | None = None, *, ids: QuerySet | None = None
          ) -> dict[int, list[Need]]:
    """What each resource needs kept, running first, then the pin, then the rollback candidates
    newest first; a digest once, with all its roles. `resources`: ids, or Resource rows loaded
    with `select_related("environment", "promote_from__environment")` (a list page has them:
    one query fewer); None for every resource. `ids`: the same resources' ids as a query, when
    the caller has one (a list page): their artifacts are read by it, where 500 ids written into
    the SQL one by one cost more than the query. At most three queries, whatever the number."""
    given = None if resources is None else list(resources)
    if given and isinstance(given[0], Resource):
        described = [_fields(resource) for resource in given]
    else:
        rows = Resource.objects.order_by()
        if given is not None:
            rows = rows.filter(pk__in=given)
        described = list(rows.values(*FIELDS))
    if not described:
        return {}
    if ids is None and given is not None:
        ids = [r["pk"] for r in described]
    healthy = _healthy(ids, settings.HOIST_KEEP_HEALTHY)
    upstream_repos = _upstream_repositories(described)
    found: dict[int, list[Need]] = {}
    for r in described:
        listed: dict[tuple[str, str], Need] = {}

        def add(repository: str, digest: str, role: str) -> None:
            need = listed.setdefault((repository, digest), Need(repository, digest, []))
            if role not in need.roles:
                need.roles.append(role)

        running_repo = r["current_image"].rpartition("@")[0]
        if r["current_digest"] and running_repo:
            add(running_repo, r["current_digest"], RUNNING)
        if r["binding"] == Binding.PIN_DIGEST and r["pinned_digest"]:
            add(_pinned_repository(r, running_repo, upstream_repos), r["pinned_digest"], PINNED)
        for repository, digest in healthy.get(r["pk"], []):
            add(repository, digest, ROLLBACK)
        found[r["pk"]] = list(listed.values())
    return found


def _fields(resource: Resource) -> dict:
    upstream = resource.promote_from if resource.promote_from_id else None
    return {
        "pk": resource.pk, "current_image": resource.current_image, "current_digest": resource.current_digest,
        "binding": resource.binding, "pinned_digest": resource.pinned_digest, "promote_from_id": resource.promote_from_id,
        "environment__cluster_id": resource.environment.cluster_id,
        "promote_from__environment__cluster_id": upstream.environment.cluster_id if upstream else None,
        "promote_from__current_image": upstream.current_image if upstream else None,
    }


def _healthy(ids: list[int] | QuerySet | None, n: int) -> dict[int, list[tuple[str, str]]]:
    """Each resource's last `n` distinct digests that ran healthy, newest first."""
    if n <= 0:
        return {}
    artifacts = Artifact.objects.filter(healthy_at__isnull=False)
    if ids is not None:
        artifacts = artifacts.filter(resource_id__in=ids)
    ranked = (artifacts.annotate(rank=Window(RowNumber(), partition_by=[F("resource_id")], order_by=F("sequence").desc()))
              .filter(rank__lte=n * WINDOW_FACTOR).order_by().values_list("resource_id", "sequence", "repository", "digest"))
    found: dict[int, list[tuple[str, str]]] = {}
    for resource_id, _, repository, digest in sorted(ranked, key=lambda row: (row[0], -row[1])):
        listed = found.setdefault(resource_id, [])
        if len(listed) < n and (repository, digest) not in listed:
            listed.append((repository, digest))
    return found


def _upstream_repositories(resources: list[dict]) -> dict[tuple[int, str], str]:
    """Same-cluster pins not running yet: the upstream's repository for the pinned digest."""
    wanted = {(r["promote_from_id"], r["pinned_digest"]) for r in resources
              if r["binding"] == Binding.PIN_DIGEST and r["pinned_digest"] != r["current_digest"]
              and r["environment__cluster_id"] == r["promote_from__environment__cluster_id"]}
    if not wanted:
        return {}
    found: dict[tuple[int, str], str] = {}
    artifacts = (Artifact.objects.filter(resource_id__in={u for u, _ in wanted}, digest__in={d for _, d in wanted})
                 .order_by("sequence").values_list("resource_id", "digest", "repository"))
    for upstream_id, digest, repository in artifacts:  # the newest publish last: it wins
        found[(upstream_id, digest)] = repository
    return found


def _pinned_repository(r: dict, running_repo: str, upstream_repos: dict) -> str:
    if r["pinned_digest"] == r["current_digest"] or r["environment__cluster_id"] != r["promote_from__environment__cluster_id"]:
        return running_repo  # across clusters: the central path, the same for every digest of this upstream
    return (upstream_repos.get((r["promote_from_id"], r["pinned_digest"]))
            or r["promote_from__current_image"].rpartition("@")[0])


# --- what the pages and the API show ------------------------------------------------------------


def protection(resources: Iterable[int] | Iterable[Resource], *, ids: QuerySet | None = None) -> dict[int, list[dict]]:
    """For each resource (ids or rows, and `ids`, as `needs` takes them): every digest it needs kept, its
    roles, where, the keep tag, and whether it is kept (`state`: a Keep.State value, "pending"
    before Hoist first looked) with the reason when it is not. At most four queries, whatever
    the number of resources."""
    found = needs(resources, ids=ids)
    keys = {need.key for listed in found.values() for need in listed if need.repository}
    rows = {}
    if keys:
        for row in Keep.objects.filter(repository__in={k[0] for k in keys}, digest__in={k[1] for k in keys}).only(
                "repository", "digest", "state", "detail", "kept_at"):
            rows[(row.repository, row.digest)] = row
    out: dict[int, list[dict]] = {}
    for resource_id, listed in found.items():
        out[resource_id] = [_entry(need, rows.get(need.key)) for need in listed]
    return out


def protection_of(resource: Resource) -> list[dict]:
    return protection([resource]).get(resource.pk, [])


def _entry(need: Need, row: Keep | None) -> dict:
    if not need.repository:
        state, detail = Keep.State.PENDING, "Not copied where it will be pulled from yet: kept once it is."
    elif row is None:
        state, detail = Keep.State.PENDING, "Not looked at yet: Hoist keeps it within minutes."
    else:
        state, detail = row.state, row.detail
    return {
        "digest": need.digest, "roles": need.roles, "repository": need.repository,
        "tag": keep_tag(need.digest) if need.repository else "", "state": state,
        "state_label": Keep.State(state).label, "detail": detail,
        "kept_at": row.kept_at if row is not None and state == Keep.State.KEPT else None,
    }
