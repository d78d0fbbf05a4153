"""Read queries of desired state: the pipeline, an environment's resources, the wizard's choices,
the clusters a user may see.

Every page reads a fixed number of queries whatever the number of
resources: what a cell needs (the upstream's latest digest, how far behind
it a downstream is) comes from subqueries annotated onto the one resource
query, never from a query per row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.db.models import Case, CharField, Count, Exists, F, IntegerField, Max, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from .models import Artifact, Binding, ChangeRequest, Cluster, Environment, Kind, RegistryHost, Resource, SourceType, TagWatch
from .references import InvalidReference, parse_reference


def clusters_visible_to(user):
    """The clusters `user` may see and place environments on.

    Staff and superusers: every cluster. Anyone else: the clusters that host an
    environment of a project they are a member of (any role), so one team never
    learns another's clusters. `None` is Hoist itself (commands, the demo): every
    cluster.
    """
    if user is None or (user.is_authenticated and (user.is_staff or user.is_superuser)):
        return Cluster.objects.all()
    if not user.is_authenticated:
        return Cluster.objects.none()
    used = Environment.objects.filter(cluster=OuterRef("pk"), project__memberships__user=user)
    return Cluster.objects.filter(Exists(used))


def latest_artifact(resource: Resource) -> Artifact | None:
    """The resource's newest publish for its current image reference (see Resource.artifact_floor)."""
    return resource.artifacts.filter(sequence__gt=resource.artifact_floor).order_by("-sequence").first()


def desired_source(resource: Resource) -> tuple[str, Artifact | None]:
    """The digest the resource should run now, and the artifact it comes from.

    Pins name their digest; track-latest follows the upstream's latest
    artifact; an image source runs its own latest artifact. ("", None) means
    nothing is known yet (an upstream that never published, a tag not resolved).
    """
    if resource.source_type == SourceType.PROMOTE:
        if resource.binding == Binding.PIN_DIGEST:
            return resource.pinned_digest, None
        upstream_latest = latest_artifact(resource.promote_from) if resource.promote_from_id else None
        return (upstream_latest.digest, upstream_latest) if upstream_latest else ("", None)
    own = latest_artifact(resource)
    return (own.digest, own) if own else ("", None)


def _upstream_artifacts():
    return Artifact.objects.filter(resource_id=OuterRef("promote_from_id"))


def with_status(resources):
    """Annotate resources with what the pages show about their upstream.

    - `upstream_digest`: the upstream's latest published digest (what a
      one-click promote would pin to, what track-latest follows).
    - `behind`: for a promoted resource, how many upstream artifacts are
      newer than the one it runs; None when that is unknown (an image
      source, or a pin to a digest the upstream never published).

    Track-latest resources record the upstream sequence they run
    (`applied_seq`); pins carry no sequence, so theirs is the newest
    upstream artifact with the digest they run (or are pinned to, before
    the first reconcile).
    """
    upstream_latest = _upstream_artifacts().order_by("-sequence")
    resources = resources.annotate(
        upstream_digest=Subquery(upstream_latest.values("digest")[:1], output_field=CharField()),
        run_digest=Case(When(current_digest="", then=F("pinned_digest")), default=F("current_digest"), output_field=CharField()),
    )
    resources = resources.annotate(
        run_seq=Case(
            When(source_type=SourceType.PROMOTE, binding=Binding.TRACK_LATEST, then=F("applied_seq")),
            When(
                source_type=SourceType.PROMOTE, binding=Binding.PIN_DIGEST,
                then=Subquery(
                    _upstream_artifacts().filter(digest=OuterRef("run_digest")).order_by("-sequence").values("sequence")[:1]
                ),
            ),
            default=Value(None),
            output_field=IntegerField(),
        )
    )
    newer = (
        _upstream_artifacts().filter(sequence__gt=OuterRef("run_seq"))
        .order_by().values("resource_id").annotate(n=Count("pk")).values("n")
    )
    return resources.annotate(
        behind=Case(
            When(run_seq__isnull=True, then=Value(None)),
            default=Coalesce(Subquery(newer, output_field=IntegerField()), Value(0)),
            output_field=IntegerField(),
        ),
        awaiting_approval=awaiting_approval(),
    )


def awaiting_approval():
    """An annotation: a change of what the resource runs waits for maintainers' approvals
    (what `environments.display` reads, with `with_status` or alone, as the API does)."""
    return Exists(ChangeRequest.objects.filter(resource=OuterRef("pk"), status=ChangeRequest.Status.AWAITING))


@dataclass
class PipelineRow:
    name: str
    cells: list = field(default_factory=list)  # one Resource or None per environment, in column order


@dataclass
class Pipeline:
    environments: list[Environment]
    rows: list[PipelineRow]

    @property
    def resource_count(self) -> int:
        return sum(1 for row in self.rows for cell in row.cells if cell is not None)


# Not shown by the pipeline or the graph: not read for a thousand cells (the database URL is
# encrypted: every row read would be decrypted).
_NOT_IN_PIPELINE = ("database_url", "ports", "runtime", "ingress_host", "schedule", "config_hash", "claim_token")


def pipeline(project) -> Pipeline:
    """Environments as columns in order, resource names as rows. Two queries.

    A resource's upstream is in the same project (the rules allow nothing else), so it is
    linked from the rows already read instead of joined a second time per row (that join
    read and built two more model objects per cell: a third of the page's time).
    """
    environments = list(project.environments.order_by("position", "name"))
    by_id = {env.pk: env for env in environments}
    resources = list(with_status(
        Resource.objects.filter(environment__project=project).defer(*_NOT_IN_PIPELINE).order_by("name")
    ))
    by_pk = {resource.pk: resource for resource in resources}
    column = {env.pk: index for index, env in enumerate(environments)}
    rows: dict[str, PipelineRow] = {}
    for resource in resources:
        # Reuse the column's Environment object: no join, and per-column flags set by the view apply.
        resource.environment = by_id[resource.environment_id]
        row = rows.setdefault(resource.name, PipelineRow(resource.name, [None] * len(environments)))
        row.cells[column[resource.environment_id]] = resource
    elsewhere = {r.promote_from_id for r in resources if r.promote_from_id and r.promote_from_id not in by_pk}
    if elsewhere:  # only if the rules were bypassed: still no query per cell
        by_pk.update(Resource.objects.select_related("environment").in_bulk(elsewhere))
    for resource in resources:
        if resource.promote_from_id:
            resource.promote_from = by_pk[resource.promote_from_id]
    return Pipeline(environments=environments, rows=list(rows.values()))


# What a pipeline or graph cell shows of a resource (directly, or through `environments.display`).
_SHOWN_FIELDS = ("id", "environment_id", "name", "source_type", "image", "binding", "pinned_digest", "promote_from_id",
                 "current_digest", "healthy_digest", "failed_digest", "phase", "message", "rollout_ready",
                 "rollout_total", "replicas", "applied_seq", "failures_in_a_row", "backoff_until",
                 # Every publish bumps its resource's artifact_seq (and an image change its floor): what
                 # "behind" counts of the upstreams, which are resources of the same project.
                 "artifact_seq", "artifact_floor")


_COLUMN_FIELDS = ("pk", "name", "slug", "position", "protected", "frozen_until")


def pipeline_version(project, environments: list[Environment] | None = None) -> str:
    """A fingerprint of the data the pipeline and the graph show of `project`: it changes
    when anything they show does, and costs one query over the resources (and one for the
    environments, unless given), so an unchanged live refresh (every open pipeline asks
    every 5 s) answers without rebuilding a thousand cells.

    Covered: the environments (columns, badges), every resource's shown fields with its
    publish sequence (what "behind" counts) and the changes awaiting approval (how many,
    and the newest). Not covered, so the caller adds them: who is asking (their buttons)
    and the freezes in force (windows begin and end by the clock alone).
    """
    if environments is None:
        environments = project.environments.all()
    digest = hashlib.blake2b(digest_size=12)
    for env in sorted(environments, key=lambda env: env.pk):
        digest.update(repr(tuple(getattr(env, f) for f in _COLUMN_FIELDS)).encode())
    now = timezone.now()
    rows, counting_down = _resource_rows_digest(project, now)
    digest.update(rows.encode())
    if counting_down:
        # "Retrying in 40 s" reads differently at every refresh while a backoff runs.
        digest.update(str(int(now.timestamp()) // 5).encode())
    return digest.hexdigest()


def _resource_rows_digest(project, now) -> tuple[str, bool]:
    """(a digest of every resource's shown fields and of the changes awaiting approval,
    whether a retry backoff runs now).

    PostgreSQL digests the rows itself, so a thousand rows don't cross the wire and get
    formatted in Python on every refresh (this was most of its cost); elsewhere (SQLite,
    `make run`) they are read and digested here. Either way the same database gives the
    same answer for the same rows, which is all a version needs."""
    if connection.vendor == "postgresql":
        shown = ", ".join(f'r."{Resource._meta.get_field(name).column}"' for name in _SHOWN_FIELDS)
        resources, environments = Resource._meta.db_table, Environment._meta.db_table
        sql = (f'SELECT md5(string_agg(ROW({shown})::text, \'|\' ORDER BY r."id")), '
               f'coalesce(bool_or(r."backoff_until" > %s), false), '
               f'(SELECT ROW(count(*), max(c."id"))::text FROM "{ChangeRequest._meta.db_table}" c '
               f' JOIN "{resources}" cr ON cr."id" = c."resource_id" JOIN "{environments}" ce ON ce."id" = cr."environment_id"'
               f' WHERE ce."project_id" = %s AND c."status" = %s) '
               f'FROM "{resources}" r JOIN "{environments}" e ON e."id" = r."environment_id" WHERE e."project_id" = %s')
        with connection.cursor() as cursor:
            cursor.execute(sql, [now, project.pk, ChangeRequest.Status.AWAITING.value, project.pk])
            digest, counting_down, awaiting = cursor.fetchone()
        return f"{digest or ''}|{awaiting}", bool(counting_down)
    rows = Resource.objects.filter(environment__project=project).order_by("pk").values_list(*_SHOWN_FIELDS)
    digest = hashlib.blake2b(digest_size=12)
    backoff = _SHOWN_FIELDS.index("backoff_until")
    counting_down = False
    for row in rows:
        digest.update(repr(row).encode())
        counting_down = counting_down or (row[backoff] is not None and row[backoff] > now)
    awaiting = ChangeRequest.objects.filter(resource__environment__project=project, status=ChangeRequest.Status.AWAITING)
    digest.update(repr(tuple(awaiting.aggregate(Count("pk"), Max("pk")).values())).encode())
    return digest.hexdigest(), counting_down


def environment_resources(environment):
    resources = with_status(
        environment.resources.select_related("promote_from__environment").order_by("name")
    )
    result = list(resources)
    for resource in result:
        resource.environment = environment
    return result


# --- the wizard's choices ----------------------------------------------------------------------


def source_environments(target: Environment):
    """Environments a resource in `target` can promote from: same project, not `target`,
    with at least one resource that produces images."""
    has_deployment = Resource.objects.filter(environment=OuterRef("pk"), kind=Kind.DEPLOYMENT)
    return (
        Environment.objects.filter(project_id=target.project_id)
        .exclude(pk=target.pk)
        .filter(Exists(has_deployment))
        .order_by("position", "name")
    )


def source_resources(environment: Environment):
    """The deployments of `environment`, each with what it runs now and since when."""
    own = Artifact.objects.filter(resource_id=OuterRef("pk")).order_by("-sequence")
    return (
        environment.resources.filter(kind=Kind.DEPLOYMENT)
        .annotate(
            latest_digest=Subquery(own.values("digest")[:1]),
            latest_published_at=Subquery(own.values("published_at")[:1]),
            running_since=Subquery(own.filter(digest=OuterRef("current_digest")).values("published_at")[:1]),
        )
        .order_by("name")
    )


def recent_artifacts(resource: Resource, limit: int = 10) -> list[Artifact]:
    """The upstream's recent publishes, newest first, one per digest (the pin picker)."""
    seen, result = set(), []
    for artifact in resource.artifacts.order_by("-sequence")[: limit * 3]:
        if artifact.digest not in seen:
            seen.add(artifact.digest)
            result.append(artifact)
        if len(result) == limit:
            break
    return result


# --- tag watches: what the resource page and the API say of a tag an image-source resource follows


def watched_tag(image: str) -> tuple[str, str, str] | None:
    """(registry host, repository, tag) an image reference follows, or None when it names a
    digest (nothing to watch) or is not a reference. No tag means `latest`."""
    try:
        ref = parse_reference(image)
    except InvalidReference:
        return None
    if ref.digest:
        return None
    return ref.registry[:255], ref.repository[:255], (ref.tag or "latest")[:128]


def tag_watches_for(resources) -> dict[int, dict]:
    """For each image-source resource given by tag (by id): how its tag is watched. Three
    queries for any number of resources. Resources watching the same tag share one dict
    (a list page's rows often do): read it, don't change it."""
    keys = {}
    parsed: dict[str, tuple[str, str, str] | None] = {}  # each distinct image parsed once
    for resource in resources:
        if resource.source_type == SourceType.IMAGE:
            if resource.image not in parsed:
                parsed[resource.image] = watched_tag(resource.image)
            key = parsed[resource.image]
            if key is not None:
                keys[resource.pk] = key
    if not keys:
        return {}
    hosts = {key[0] for key in keys.values()}
    watches = {(w.host, w.repository, w.tag): w for w in TagWatch.objects.filter(
        host__in=hosts, repository__in={key[1] for key in keys.values()}, tag__in={key[2] for key in keys.values()})}
    intervals = dict(RegistryHost.objects.filter(host__in=hosts, watch_interval_s__isnull=False)
                     .values_list("host", "watch_interval_s"))
    shown = {}
    for key in set(keys.values()):
        watch = watches.get(key)
        shown[key] = {
            "tag": f"{key[0]}/{key[1]}:{key[2]}",
            "interval_s": intervals.get(key[0]) or int(settings.HOIST_TAG_WATCH_INTERVAL_S),
            "checked_at": watch.checked_at if watch else None,
            "changed_at": watch.changed_at if watch else None,
            "next_check_at": watch.next_check_at if watch else None,
            "digest": (watch.digest or None) if watch else None,
            "error": (watch.last_error or None) if watch else None,
        }
    return {resource_id: shown[key] for resource_id, key in keys.items()}


def tag_watch_of(resource: Resource) -> dict | None:
    return tag_watches_for([resource]).get(resource.pk)


def registries_with_watch_counts():
    """Every registry Hoist has called, with how many tags it watches there."""
    watched = TagWatch.objects.filter(host=OuterRef("host")).order_by().values("host").annotate(n=Count("pk")).values("n")
    return RegistryHost.objects.annotate(watched_tags=Coalesce(Subquery(watched, output_field=IntegerField()), 0))
