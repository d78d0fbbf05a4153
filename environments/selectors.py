"""Read queries of desired state: the pipeline, an environment's resources, the wizard's choices,
the clusters a user may see.

Every page reads a fixed number of queries whatever the number of
resources: what a cell needs (the upstream's latest digest, how far behind
it a downstream is) comes from subqueries annotated onto the one resource
query, never from a query per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Case, CharField, Count, Exists, F, IntegerField, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce

from .models import Artifact, Binding, Cluster, Environment, Kind, Resource, SourceType


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
        )
    )


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


def pipeline(project) -> Pipeline:
    """Environments as columns in order, resource names as rows. Two queries."""
    environments = list(project.environments.order_by("position", "name"))
    by_id = {env.pk: env for env in environments}
    resources = with_status(
        Resource.objects.filter(environment__project=project)
        .select_related("promote_from__environment")
        .order_by("name")
    )
    column = {env.pk: index for index, env in enumerate(environments)}
    rows: dict[str, PipelineRow] = {}
    for resource in resources:
        # Reuse the column's Environment object: no join, and per-column flags set by the view apply.
        resource.environment = by_id[resource.environment_id]
        row = rows.setdefault(resource.name, PipelineRow(resource.name, [None] * len(environments)))
        row.cells[column[resource.environment_id]] = resource
    return Pipeline(environments=environments, rows=list(rows.values()))


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
