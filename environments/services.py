"""Every write of desired state: clusters, environments, resources, publishes, pins.

The browser pages, the wizard, the admin (forms and actions), the API, the
registry webhook and the management commands all call these; none saves
these models itself. Each write, in one place:

1. takes the actor (`None` is Hoist itself: the webhook after its own token
   check, commands, the engine) and checks role and protection
   (`projects.permissions`);
2. checks the rules (`environments.rules` and the source rules below), each
   error naming its field;
3. writes in one transaction, with one audit entry (`projects.audit`); a
   refusal is audited too;
4. tells the engine what changed through `environments.signals`, never by
   importing it (arrows point down).

Create/update services take `validate_only=True` for forms that show errors
in place before saving (the admin): same checks, same audit of a refusal,
nothing written.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from projects import audit
from projects.models import Project, Role
from projects.permissions import require_change_environment, require_pin, require_role, require_staff

from . import fields, freeze, rules, signals
from .models import (
    PROMOTABLE_KINDS,
    Approval,
    Artifact,
    Binding,
    ChangeReason,
    ChangeRequest,
    Cluster,
    Follow,
    EnvVar,
    Environment,
    Kind,
    RegistryHost,
    Resource,
    SourceType,
)
from .selectors import clusters_visible_to, desired_source, latest_artifact

CONFIG_FIELDS = (
    "runtime", "ports", "replicas", "ingress_host", "database_url", "schedule",
    "follow", "soak_seconds", "rollback_on_failure", "progress_deadline_seconds",
)
SOURCE_FIELDS = ("source_type", "image", "promote_from", "binding", "pinned_digest")
CLUSTER_FIELDS = ("name", "slug", "api_url", "ca_cert", "token", "kubeconfig", "registry", "registry_username", "registry_password")
CLUSTER_SECRETS = ("token", "kubeconfig", "registry_password")
ENVIRONMENT_CHANGEABLE = ("name", "protected", "position", "required_approvals", "approve_automatic")


class Errors:
    """Collects field errors so a form or an API response shows all of them at once."""

    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.by_field.setdefault(field, []).append(message)

    def run(self, check, *args, **kwargs):
        try:
            return check(*args, **kwargs)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                for message in messages:
                    self.add(field, message)
            return None

    def raise_if_any(self) -> None:
        if self.by_field:
            raise ValidationError(self.by_field)


# --- audit summaries (secret values never included: projects.audit redacts them) --------------


def _cluster_summary(cluster: Cluster) -> dict:
    summary = {field: getattr(cluster, field) for field in CLUSTER_FIELDS if field not in CLUSTER_SECRETS}
    summary.update({field: "set" if getattr(cluster, field) else "not set" for field in CLUSTER_SECRETS})
    return summary


def _environment_summary(environment: Environment) -> dict:
    return {
        "name": environment.name, "slug": environment.slug, "cluster": environment.cluster.slug,
        "namespace": environment.namespace, "protected": environment.protected, "position": environment.position,
        "required_approvals": environment.required_approvals, "approve_automatic": environment.approve_automatic,
    }


def _resource_summary(resource: Resource) -> dict:
    return {
        "name": resource.name, "kind": resource.kind, "source_type": resource.source_type, "image": resource.image,
        "promote_from": str(resource.promote_from) if resource.promote_from_id else None,
        "binding": resource.binding, "pinned_digest": resource.pinned_digest,
        "runtime": resource.runtime, "ports": resource.ports, "replicas": resource.replicas,
        "ingress_host": resource.ingress_host, "schedule": resource.schedule,
        "follow": resource.follow, "soak_seconds": resource.soak_seconds,
        "rollback_on_failure": resource.rollback_on_failure, "progress_deadline_seconds": resource.progress_deadline_seconds,
        "database_url": "set" if resource.database_url else "not set",
        "env": [{"name": var.name, "value": var.value, "secret": var.secret} for var in resource.env_vars.all()],
    }


def _actor_user(actor):
    return actor if getattr(actor, "is_authenticated", False) else None


# --- what the engine is told -------------------------------------------------------------------


def _changed(resource: Resource, *, reason: str, to_digest: str = "", artifact: Artifact | None = None,
             actor=None, actor_label: str = "", change_request: ChangeRequest | None = None) -> None:
    signals.desired_state_changed.send(
        sender=Resource, resource=resource, reason=reason, to_digest=to_digest, artifact=artifact,
        actor=actor, actor_label=actor_label, change_request=change_request,
    )


def _removed(resource: Resource) -> None:
    env = resource.environment
    signals.resource_removed.send(
        sender=Resource, cluster_id=env.cluster_id, namespace=env.namespace, project=env.project.slug,
        environment=env.slug, resource=resource.name,
    )


# --- clusters ---------------------------------------------------------------------------------


def cluster_create(*, name: str, slug: str, api_url: str, actor=None, validate_only: bool = False, **fields: Any) -> Cluster:
    with audit.attempt("cluster.create", actor=actor) as entry:
        require_staff(actor, "add clusters")
        unknown = sorted(set(fields) - set(CLUSTER_FIELDS))
        if unknown:
            raise ValidationError({field: ["Unknown field."] for field in unknown})
        cluster = Cluster(name=name, slug=slug, api_url=api_url, **fields)
        cluster.full_clean()
        if validate_only:
            entry.skip()
            return cluster
        cluster.save()
        entry.describe(target=cluster, after=_cluster_summary(cluster))
    return cluster


def cluster_update(*, cluster: Cluster, actor=None, validate_only: bool = False, **changes: Any) -> Cluster:
    """Change a cluster (staff). Only the keys given change; secrets given as "" are cleared."""
    with audit.attempt("cluster.update", actor=actor, target=cluster) as entry:
        require_staff(actor, "change clusters")
        return _update_row(entry, cluster, CLUSTER_FIELDS, _cluster_summary, changes, validate_only=validate_only)


def _update_row(entry, instance, allowed, summary, changes: dict, *, validate_only: bool, only_changed: bool = False):
    """A staff edit of one row, inside the caller's audit `entry`: refuse unknown keys, lock the
    row, set the keys given, validate, save (only those columns with `only_changed`, for rows
    other writers update at the same time) and record before → after."""
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise ValidationError({field: ["Unknown field."] for field in unknown})
    stored = type(instance).objects.select_for_update().get(pk=instance.pk)
    before = summary(stored)
    for field, value in changes.items():
        setattr(stored, field, value)
    stored.full_clean()
    if validate_only:
        entry.skip()
        return stored
    stored.save(update_fields=(list(changes) or None) if only_changed else None)
    entry.describe(target=stored, before=before, after=summary(stored))
    return stored


def cluster_delete(*, cluster: Cluster, actor=None) -> None:
    """Delete a cluster (staff), refusing while environments use it."""
    with audit.attempt("cluster.delete", actor=actor, target=cluster) as entry:
        require_staff(actor, "delete clusters")
        used_by = sorted(str(env) for env in cluster.environments.select_related("project"))
        if used_by:
            raise ValidationError(
                {"cluster": [f"Cluster {cluster.slug} can't be deleted: environments {', '.join(used_by)} use it."]}
            )
        entry.describe(before=_cluster_summary(cluster))
        cluster.delete()


def credentials_rotate(*, check: bool = False, actor=None) -> fields.Rotation:
    """Re-encrypt under the first credentials key what older keys encrypted (fields.rotate;
    staff). One transaction with its audit entry, which counts by field and holds no value;
    a `check` writes nothing and records nothing."""
    with audit.attempt("credentials.rotate", actor=actor, target_type="credentials",
                       target_repr="HOIST_CREDENTIALS_KEY") as entry:
        require_staff(actor, "rotate credentials")
        found = fields.rotate(check=check)
        if check:
            entry.skip()
        else:
            entry.describe(changes={"rotated": found.rotated,
                                    "unreadable": {name: len(ids) for name, ids in found.unreadable.items()}})
    return found


# --- registries ------------------------------------------------------------------------------

REGISTRY_FIELDS = ("watch_interval_s", "rate_per_s", "concurrency", "protect")


def _registry_summary(registry: RegistryHost) -> dict:
    return {field: getattr(registry, field) for field in ("host", *REGISTRY_FIELDS)}


def registry_update(*, registry: RegistryHost, actor=None, validate_only: bool = False, **changes: Any) -> RegistryHost:
    """Tune how Hoist treats one registry host (staff): watch interval, rate and concurrency
    limits (None: the installation's default) and whether keep tags are pushed there."""
    with audit.attempt("registry.update", actor=actor, target=registry) as entry:
        require_staff(actor, "change registry settings")
        # Only the settings' columns: the limiter writes its own (paced_until, throttled_until) meanwhile.
        return _update_row(entry, registry, REGISTRY_FIELDS, _registry_summary, changes, validate_only=validate_only,
                           only_changed=True)


# --- environments -----------------------------------------------------------------------------


def environment_create(
    *, project: Project, name: str, slug: str, cluster: Cluster, namespace: str,
    protected: bool = False, position: int | None = None, actor=None, validate_only: bool = False,
) -> Environment:
    with audit.attempt("environment.create", actor=actor, project=project) as entry:
        require_role(actor, project, Role.MAINTAINER, "add environments")
        if cluster is not None and not clusters_visible_to(actor).filter(pk=cluster.pk).exists():
            # Worded as for a cluster that doesn't exist: a refusal must not reveal another team's cluster.
            raise ValidationError({"cluster": [f"No cluster {cluster.slug!r}."]})
        if position is None:
            last = project.environments.order_by("-position").values_list("position", flat=True).first()
            position = 0 if last is None else last + 1
        environment = Environment(
            project=project, name=name, slug=slug, cluster=cluster, namespace=namespace,
            protected=protected, position=position,
        )
        environment.full_clean()
        if validate_only:
            entry.skip()
            return environment
        try:
            with transaction.atomic():
                environment.save()
        except IntegrityError as exc:
            # Two creates raced past full_clean(): report it as the form would have.
            environment.validate_constraints()
            raise ValidationError({"slug": [f"An environment named {slug} was just created in {project.slug}."]}) from exc
        entry.describe(target=environment, after=_environment_summary(environment))
    return environment


def environment_update(*, environment: Environment, actor=None, validate_only: bool = False, **changes: Any) -> Environment:
    """Rename, (un)protect or reorder an environment, or set its approvals (maintainers).

    Cluster and namespace stay: moving an environment would strand what runs there.
    """
    with audit.attempt("environment.update", actor=actor, target=environment) as entry:
        require_role(actor, environment.project, Role.MAINTAINER, "change environments")
        stored = Environment.objects.select_for_update().select_related("project", "cluster").get(pk=environment.pk)
        errors = Errors()
        for field in sorted(set(changes) - set(ENVIRONMENT_CHANGEABLE)):
            if field in ("slug", "cluster", "namespace", "project"):
                if changes[field] != getattr(stored, field):
                    errors.add(field, f"The {field} of an environment can't change; create a new environment instead.")
            else:
                errors.add(field, "Unknown field.")
        errors.raise_if_any()
        before = _environment_summary(stored)
        for field in ENVIRONMENT_CHANGEABLE:
            if field in changes:
                setattr(stored, field, changes[field])
        stored.full_clean()
        if validate_only:
            entry.skip()
            return stored
        stored.save()
        entry.describe(target=stored, before=before, after=_environment_summary(stored))
    return stored


def environment_delete(*, environment: Environment, actor=None) -> None:
    with audit.attempt("environment.delete", actor=actor, target=environment) as entry:
        require_role(actor, environment.project, Role.MAINTAINER, "delete environments")
        outside = list(
            Resource.objects.filter(promote_from__environment=environment)
            .exclude(environment=environment)
            .select_related("environment__project", "promote_from__environment__project")
        )
        if outside:
            raise ValidationError(
                {"environment": [f"Environment {environment.slug} can't be deleted: " + _dependants_sentence(outside)]}
            )
        entry.describe(before=_environment_summary(environment))
        for resource in environment.resources.select_related("environment__project"):
            # Their objects (Secrets with secret values among them) leave the cluster too.
            _removed(resource)
        environment.delete()


# --- source rules ----------------------------------------------------------------------------


def would_cycle(resource: Resource | None, upstream: Resource) -> bool:
    """True when making `resource` promote from `upstream` closes a loop.

    Walks the upstream's chain; a chain that reaches `resource` again is a
    cycle. A resource not yet saved can't be anyone's upstream.
    """
    if resource is None or resource.pk is None:
        return False
    seen: set[int] = set()
    node: Resource | None = upstream
    while node is not None:
        if node.pk == resource.pk:
            return True
        if node.pk in seen:  # an existing loop elsewhere; never loop forever
            return True
        seen.add(node.pk)
        node = Resource.objects.select_related("promote_from").get(pk=node.pk).promote_from
    return False


def check_source_environment(environment: Environment, source: Environment, field: str = "promote_from") -> None:
    """Never promote into the environment you promote from (the wizard asks this on its own step)."""
    if source.pk == environment.pk:
        raise rules.error(
            field,
            f"You can't promote into the environment you promote from ({environment.slug}); pick another source environment.",
        )


def check_source(
    errors: Errors, *, environment: Environment, kind: str, source_type: str, image: str,
    promote_from: Resource | None, binding: str, pinned_digest: str, resource: Resource | None = None,
) -> None:
    """The scope rules of a resource's source (DESIGN guarantee 6), each naming its field."""
    if source_type not in SourceType.values:
        errors.add("source_type", f"Source must be one of: {', '.join(SourceType.values)}.")
        return
    if source_type == SourceType.IMAGE:
        if not image:
            errors.add("image", "An image reference is required when the source is Image.")
        else:
            errors.run(rules.check_image_reference, image)
        return

    # Promote from environment.
    if kind not in PROMOTABLE_KINDS:
        errors.add("kind", f"Only deployment resources can be promoted today; a {kind} can't use Promote from environment.")
    if promote_from is None:
        errors.add("promote_from", "Pick the source resource to promote from.")
    else:
        upstream_env = promote_from.environment
        if upstream_env.project_id != environment.project_id:
            errors.add(
                "promote_from",
                f"{promote_from} is in project {upstream_env.project.slug}; the source must be in the same project "
                f"({environment.project.slug}).",
            )
        elif upstream_env.pk == environment.pk:
            errors.run(check_source_environment, environment, upstream_env)
        elif not promote_from.produces_images:
            errors.add(
                "promote_from",
                f"{promote_from} is a {promote_from.kind}; only resources that produce images (deployment) can be promoted from.",
            )
        elif would_cycle(resource, promote_from):
            errors.add(
                "promote_from",
                f"Promoting {resource} from {promote_from} would create a cycle: {promote_from} already "
                f"(directly or through others) promotes from {resource}.",
            )
    if binding not in Binding.values:
        errors.add("binding", "Choose Track latest or Pin to digest.")
    elif binding == Binding.PIN_DIGEST:
        if not pinned_digest:
            errors.add("pinned_digest", "Paste the digest to pin, e.g. sha256:… (64 lower-case hex characters).")
        else:
            errors.run(rules.check_digest, pinned_digest)


def check_config(errors: Errors, *, kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalise a resource's own config; returns the cleaned values."""
    cleaned = dict(values)
    if "ports" in values:
        cleaned["ports"] = errors.run(rules.check_ports, values["ports"])
    if "runtime" in values:
        errors.run(rules.check_runtime, values["runtime"] or "")
    if "ingress_host" in values:
        errors.run(rules.check_ingress_host, values["ingress_host"] or "")
    if "replicas" in values:
        replicas = values["replicas"]
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= 1000:
            errors.add("replicas", f"Replicas must be a whole number from 0 to 1000 (got {replicas!r}).")
    if "schedule" in values:
        schedule = values["schedule"] or ""
        if kind == Kind.CRONJOB and len(schedule.split()) != 5:
            errors.add("schedule", "A cronjob needs a five-field cron schedule, e.g. '*/5 * * * *'.")
        if kind != Kind.CRONJOB and schedule:
            errors.add("schedule", "Only cronjobs have a schedule.")
    if "database_url" in values and values["database_url"] and len(values["database_url"]) > 4096:
        errors.add("database_url", "Database URL is too long (at most 4096 characters).")
    if "follow" in values and values["follow"] not in Follow.values:
        errors.add("follow", f"Follow must be one of: {', '.join(Follow.values)} (got {str(values['follow'])[:40]!r}).")
    for field, low, high, unit in (("soak_seconds", 0, 7 * 24 * 3600, "seconds"),
                                   ("progress_deadline_seconds", 1, 24 * 3600, "seconds")):
        if field in values:
            value = values[field]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                errors.add(field, f"{field.replace('_', ' ').capitalize()} must be a whole number of {unit} "
                                  f"from {low} to {high} (got {value!r}).")
    if "rollback_on_failure" in values and not isinstance(values["rollback_on_failure"], bool):
        errors.add("rollback_on_failure", f"Rollback on failure must be true or false (got {values['rollback_on_failure']!r}).")
    return cleaned


def check_env(errors: Errors, env: Iterable[dict] | None) -> list[dict]:
    """Env vars as [{"name", "value", "secret"}]. A secret whose value is None keeps its stored value."""
    cleaned: list[dict] = []
    if env is None:
        return cleaned
    if not isinstance(env, (list, tuple)):
        errors.add("env", "Environment variables must be a list of {name, value, secret}.")
        return cleaned
    seen = set()
    for item in env:
        if not isinstance(item, dict) or "name" not in item:
            errors.add("env", "Each environment variable needs a name.")
            continue
        name = errors.run(rules.check_env_name, item["name"])
        if name is None:
            continue
        if name in seen:
            errors.add("env", f"Environment variable {name} is listed twice.")
            continue
        seen.add(name)
        value = item.get("value")
        if value is not None and not isinstance(value, str):
            errors.add("env", f"The value of {name} must be a string.")
            continue
        if value is not None and len(value) > 32768:
            errors.add("env", f"The value of {name} is too long (at most 32768 characters).")
            continue
        cleaned.append({"name": name, "value": value, "secret": bool(item.get("secret", False))})
    return cleaned


def _dependants_sentence(dependants: list[Resource]) -> str:
    names = ", ".join(sorted(str(d) for d in dependants))
    return f"{names} promote{'s' if len(dependants) == 1 else ''} from it. Point them elsewhere or delete them first."


# --- resources -------------------------------------------------------------------------------


def _lock_project(project_id: int) -> None:
    # Source-graph changes of one project take turns, so two concurrent edits
    # (A from B, B from A) can't both pass the cycle check.
    Project.objects.select_for_update().filter(pk=project_id).first()


def check_secrets_stay_secret(errors: Errors, resource: Resource | None, env: list[dict] | None) -> None:
    """A stored secret becomes a plain variable only with a new value: its old value is never
    revealed (to viewers, pages, the API or the Deployment). The same rule at every door."""
    if resource is None or resource.pk is None or not env:
        return
    secrets = {var.name for var in resource.env_vars.all() if var.secret}
    for item in env:
        if item["name"] in secrets and not item["secret"] and item["value"] is None:
            errors.add("env", f"Give {item['name']} a new value to make it non-secret: a saved secret is never shown again.")


def _write_env(resource: Resource, env: list[dict], replace: bool) -> None:
    existing = {var.name: var for var in resource.env_vars.all()}
    keep = set()
    for item in env:
        keep.add(item["name"])
        var = existing.get(item["name"])
        if var is None:
            EnvVar.objects.create(resource=resource, name=item["name"], value=item["value"] or "", secret=item["secret"])
            continue
        if item["value"] is not None:
            var.value = item["value"]
        var.secret = item["secret"]
        var.save()
    if replace:
        resource.env_vars.exclude(name__in=keep).delete()


def validate_resource_create(
    *, environment: Environment, name: str, kind: str = Kind.DEPLOYMENT,
    source_type: str = SourceType.IMAGE, image: str = "", promote_from: Resource | None = None,
    binding: str = "", pinned_digest: str = "", env: list[dict] | None = None, **config: Any,
) -> dict[str, Any]:
    """Check a new resource against every rule; returns the cleaned arguments or raises
    ValidationError keyed by field. The admin form calls this to show errors in place."""
    errors = Errors()
    for field in sorted(set(config) - set(CONFIG_FIELDS)):
        errors.add(field, "Unknown field.")
    errors.run(rules.check_resource_name, name)
    if kind not in Kind.values:
        errors.add("kind", f"Kind must be one of: {', '.join(Kind.values)}.")
    if source_type == SourceType.PROMOTE:
        image = ""
    else:
        promote_from, binding = None, ""
    if binding != Binding.PIN_DIGEST:
        pinned_digest = ""
    check_source(
        errors, environment=environment, kind=kind, source_type=source_type, image=image,
        promote_from=promote_from, binding=binding, pinned_digest=pinned_digest,
    )
    config = check_config(errors, kind=kind, values={"schedule": "", **config})
    env = check_env(errors, env)
    if name and environment.resources.filter(name=name).exists():
        errors.add("name", f"A resource named {name} already exists in {environment.slug}.")
    errors.raise_if_any()
    return dict(
        environment=environment, name=name, kind=kind, source_type=source_type, image=image,
        promote_from=promote_from, binding=binding, pinned_digest=pinned_digest, env=env, **config,
    )


def resource_create(*, actor=None, validate_only: bool = False, **arguments: Any) -> Resource:
    """Create a resource with its source and own config, then queue its first reconcile.

    Arguments are those of validate_resource_create.
    """
    environment = arguments["environment"]
    with audit.attempt("resource.create", actor=actor, project=environment.project,
                       target_type="resource", target_repr=f"{environment}/{arguments.get('name', '')}") as entry:
        require_change_environment(actor, environment, "create resources")
        if arguments.get("source_type") == SourceType.PROMOTE and arguments.get("binding") == Binding.PIN_DIGEST:
            # A pin decides what runs until a person moves it: the maintainer's, from the start.
            require_pin(actor, environment, "pin a digest")
        cleaned = validate_resource_create(**arguments)
        if validate_only:
            entry.skip()
            return Resource(**{k: v for k, v in cleaned.items() if k != "env"})
        env = cleaned.pop("env")
        name = cleaned["name"]
        _lock_project(environment.project_id)
        resource = Resource(**cleaned)
        try:
            with transaction.atomic():
                resource.save()
        except IntegrityError as exc:
            if environment.resources.filter(name=name).exists():
                raise ValidationError({"name": [f"A resource named {name} already exists in {environment.slug}."]}) from exc
            raise
        _write_env(resource, env, replace=True)
        _first_desired_state(resource, actor=actor)
        entry.describe(target=resource, after=_resource_summary(resource))
    return resource


def _first_desired_state(resource: Resource, *, actor) -> None:
    digest, artifact = "", None
    if resource.source_type == SourceType.IMAGE:
        parsed = rules.check_image_reference(resource.image)
        if parsed.digest:
            # An image given by digest is its own first publish.
            resource.artifact_seq = 1
            resource.save(update_fields=["artifact_seq"])
            artifact = Artifact.objects.create(
                resource=resource, sequence=1, repository=parsed.name, digest=parsed.digest,
                tag=parsed.tag or "", origin=Artifact.Origin.IMAGE,
                first_published_at=timezone.now(), published_by=_actor_user(actor),
            )
            digest = parsed.digest
    else:
        digest, artifact = desired_source(resource)
    _changed(resource, reason=ChangeReason.CREATE, to_digest=digest, artifact=artifact, actor=actor)


def validate_resource_update(*, resource: Resource, env: list[dict] | None = None, **changes: Any) -> dict[str, Any]:
    """Check changes to an existing resource; returns what resource_update will write."""
    errors = Errors()
    for field in ("name", "kind", "environment"):
        if field in changes and changes[field] != getattr(resource, field):
            errors.add(field, f"The {field} of a resource can't change; create a new resource instead.")
        changes.pop(field, None)
    for field in sorted(set(changes) - set(CONFIG_FIELDS) - set(SOURCE_FIELDS)):
        errors.add(field, "Unknown field.")
    errors.raise_if_any()

    source = {field: changes.get(field, getattr(resource, field)) for field in SOURCE_FIELDS}
    if source["source_type"] == SourceType.PROMOTE:
        source["image"] = ""
    else:
        source["promote_from"], source["binding"] = None, ""
    if source["binding"] != Binding.PIN_DIGEST:
        source["pinned_digest"] = ""
    source_changed = any(source[f] != getattr(resource, f) for f in SOURCE_FIELDS)
    if source_changed:
        check_source(errors, environment=resource.environment, kind=resource.kind, resource=resource, **source)
    config = check_config(errors, kind=resource.kind, values={f: changes[f] for f in CONFIG_FIELDS if f in changes})
    env = check_env(errors, env) if env is not None else None
    check_secrets_stay_secret(errors, resource, env)
    errors.raise_if_any()
    return {"source": source, "source_changed": source_changed, "config": config, "env": env}


def resource_update(
    *, resource: Resource, actor=None, env: list[dict] | None = None,
    precondition: Callable[[Resource], None] | None = None, validate_only: bool = False,
    freeze_override: str = "", request_kind: str = "", approved: ChangeRequest | None = None, **changes: Any,
) -> Resource:
    """Change a resource's config and/or source. Name, kind and environment can't change.

    Only the keys given change. `env`, when given, replaces the list (a secret
    given with value None keeps its stored value). Changing a pin or the
    binding of a promoted resource needs the maintainer role.

    Validation runs against the locked row, so an edit racing another (a
    replicas change against a pin change) can't write back a stale source.
    `precondition(locked)` runs under the same lock before anything is
    checked (the API's If-Match).

    Governance: in an environment with `required_approvals`, a person's source change
    is not written but becomes a ChangeRequest (config changes in the same call are
    written); the returned resource carries it as `change_request`. During a freeze a
    person's source change needs `freeze_override` (a maintainer's reason). `approved`:
    the ChangeRequest being applied now that it was approved (internal).
    """
    with audit.attempt("resource.update", actor=actor, target=resource) as entry:
        require_change_environment(actor, resource.environment, "change resources")
        if any(field in changes for field in SOURCE_FIELDS):
            _lock_project(resource.environment.project_id)
        locked = Resource.objects.select_for_update(no_key=True).select_related("environment__project").get(pk=resource.pk)
        if precondition is not None:
            precondition(locked)
        plan = validate_resource_update(resource=locked, env=env, **changes)
        source = plan["source"]
        if plan["source_changed"] and locked.source_type == SourceType.PROMOTE and (
            source["binding"] != locked.binding or source["pinned_digest"] != locked.pinned_digest
        ):
            require_pin(actor, locked.environment)
        person = _actor_user(actor) is not None
        request = None
        if plan["source_changed"] and person and approved is None and locked.environment.required_approvals:
            if validate_only:
                entry.skip()
                return locked
            request = _request_change(locked, source, request_kind or _kind_of(locked, source), actor)
            entry.describe(changes={"change_request": request.pk, "awaiting_approvals": request.required})
            source = {f: getattr(locked, f) for f in SOURCE_FIELDS}  # what runs doesn't change yet
            plan = {**plan, "source_changed": False}
        elif plan["source_changed"] and person:
            _freeze_gate(locked, source, actor, freeze_override, entry, validate_only=validate_only)
        if validate_only:
            entry.skip()
            return locked
        before = _resource_summary(locked)
        previous = {f: getattr(locked, f) for f in SOURCE_FIELDS}
        for field, value in {**source, **plan["config"]}.items():
            setattr(locked, field, value)
        if plan["source_changed"]:
            # Sequences belong to the publishing resource: a new upstream (or a
            # pin turned into track-latest) starts its own order.
            locked.applied_seq = 0
        # A person's change (a new pin, or the config fix a crashing digest needed)
        # lifts "not applied again after a failed rollout".
        locked.failed_digest = ""
        locked.save()
        if plan["env"] is not None:
            _write_env(locked, plan["env"], replace=True)
        _source_changed(locked, previous_source=previous, source_changed=plan["source_changed"], actor=actor,
                        change_request=approved, kind=approved.kind if approved is not None else request_kind)
        entry.describe(target=locked, before=before, after=_resource_summary(locked))
    resource.refresh_from_db()
    resource.change_request = request
    return resource


def _person_reason(binding: str, kind: str = "") -> str:
    """The reason the engine records for a person's change of a promoted resource's source: the
    one-click promote (`kind` promote, also once approved) is its own, not a pin edit."""
    if kind == ChangeRequest.Kind.PROMOTE:
        return ChangeReason.PROMOTE
    return ChangeReason.PIN_EDIT if binding == Binding.PIN_DIGEST else ChangeReason.TRACK_LATEST


def _source_changed(resource: Resource, *, previous_source: dict, source_changed: bool, actor,
                    change_request: ChangeRequest | None = None, kind: str = "") -> None:
    if not source_changed:
        _changed(resource, reason="", actor=actor)  # config only: same image, new spec
        return
    if resource.source_type == SourceType.IMAGE and resource.image != previous_source["image"]:
        parsed = rules.check_image_reference(resource.image)
        if parsed.digest:
            artifact_publish(resource=resource, digest=parsed.digest, repository=parsed.name,
                             tag=parsed.tag or "", origin=Artifact.Origin.IMAGE, actor=None,
                             actor_label=str(actor) if actor else "")
            return
        # A new tag: what was published for the old reference no longer counts;
        # reconcile resolves the tag (once) and publishes that.
        resource.artifact_floor = resource.artifact_seq
        Resource.objects.filter(pk=resource.pk).update(artifact_floor=resource.artifact_seq)
        _changed(resource, reason="", actor=actor)
        return
    reason = _person_reason(resource.binding, kind)
    digest, artifact = desired_source(resource)
    _changed(resource, reason=reason, to_digest=digest, artifact=artifact, actor=actor, change_request=change_request)


def resource_delete(*, resource: Resource, actor=None, precondition: Callable[[Resource], None] | None = None) -> None:
    """Delete a resource, refusing while others promote from it (never silently orphan them)."""
    with audit.attempt("resource.delete", actor=actor, target=resource) as entry:
        require_change_environment(actor, resource.environment, "delete resources")
        _lock_project(resource.environment.project_id)
        locked = Resource.objects.select_for_update().select_related("environment__project").get(pk=resource.pk)
        if precondition is not None:
            precondition(locked)
        dependants = list(locked.dependants.select_related("environment__project"))
        if dependants:
            raise ValidationError({"resource": [f"{locked} can't be deleted: " + _dependants_sentence(dependants)]})
        entry.describe(before=_resource_summary(locked))
        _removed(locked)
        locked.delete()


# --- what runs: publishing, pinning, promoting ---------------------------------------------------


def validate_publish(*, resource: Resource, digest: str | None, tag: str = "", repository: str = "") -> str:
    """Check a publish; returns the repository the artifact will record.

    `digest=None`: the digest is not known yet (a tag still to be resolved).
    """
    if resource.source_type != SourceType.IMAGE:
        raise ValidationError(
            {"resource": [f"{resource} promotes from {resource.promote_from}; publish to the upstream instead."]}
        )
    if digest is not None:
        rules.check_digest(digest, "digest")
    if tag and (len(tag) > 128 or not rules.TAG_RE.match(tag)):
        raise ValidationError({"tag": [f"Not a valid tag: {tag[:80]!r}."]})
    if repository:
        parsed = rules.check_image_reference(repository, "repository")
        if parsed.tag or parsed.digest:
            raise ValidationError({"repository": ["Give the repository without a tag or digest."]})
        return parsed.name
    return rules.check_image_reference(resource.image).name


def artifact_publish(
    *, resource: Resource, digest: str, repository: str = "", tag: str = "",
    origin: str = Artifact.Origin.API, actor=None, actor_label: str = "", validate_only: bool = False,
) -> Artifact:
    """Record that an image-source resource published `digest`; track-latest dependants follow."""
    with audit.attempt("artifact.publish", actor=actor, target=resource, actor_label=actor_label,
                       changes={"digest": digest, "tag": tag, "repository": repository, "origin": origin}) as entry:
        require_change_environment(actor, resource.environment, "publish images")
        repository = validate_publish(resource=resource, digest=digest, tag=tag, repository=repository)
        if validate_only:
            entry.skip()
            return Artifact(resource=resource, digest=digest, tag=tag, repository=repository, origin=origin)
        locked = Resource.objects.select_for_update(no_key=True).get(pk=resource.pk)
        locked.artifact_seq += 1
        locked.save(update_fields=["artifact_seq"])
        artifact = Artifact.objects.create(
            resource=locked, sequence=locked.artifact_seq, repository=repository, digest=digest, tag=tag,
            origin=origin, first_published_at=timezone.now(), published_by=_actor_user(actor),
        )
        _changed(locked, reason=ChangeReason.PUBLISH, to_digest=digest, artifact=artifact, actor=actor, actor_label=actor_label)
        entry.describe(changes={"sequence": artifact.sequence})
    return artifact


def resource_pin(*, resource: Resource, digest: str, actor=None, freeze_override: str = "",
                 request_kind: str = "") -> Resource:
    """Pin a promoted resource to `digest` (how a newer build reaches prod)."""
    with audit.attempt("resource.pin", actor=actor, target=resource, changes={"digest": digest}):
        if resource.source_type != SourceType.PROMOTE:
            raise ValidationError({"binding": [f"{resource} has an image source; only promoted resources can be pinned."]})
        return resource_update(resource=resource, binding=Binding.PIN_DIGEST, pinned_digest=digest, actor=actor,
                               freeze_override=freeze_override, request_kind=request_kind)


def resource_track_latest(*, resource: Resource, actor=None, freeze_override: str = "") -> Resource:
    with audit.attempt("resource.track_latest", actor=actor, target=resource):
        if resource.source_type != SourceType.PROMOTE:
            raise ValidationError({"binding": [f"{resource} has an image source; only promoted resources track an upstream."]})
        return resource_update(resource=resource, binding=Binding.TRACK_LATEST, actor=actor,
                               freeze_override=freeze_override)


def resource_promote_upstream_current(*, resource: Resource, actor=None, freeze_override: str = "") -> Resource:
    """Pin to what the upstream runs now (the pipeline's one-click promote); before its
    first apply, to its latest publish."""
    with audit.attempt("resource.promote", actor=actor, target=resource) as entry:
        require_pin(actor, resource.environment, "promote")
        if resource.source_type != SourceType.PROMOTE:
            raise ValidationError({"binding": [f"{resource} has an image source; there is no upstream to promote from."]})
        upstream = resource.promote_from
        upstream_latest = latest_artifact(upstream)
        digest = upstream.current_digest or (upstream_latest.digest if upstream_latest else "")
        if not digest:
            raise ValidationError({"promote_from": [f"{upstream} has not published an image yet."]})
        entry.describe(changes={"digest": digest, "upstream": str(upstream)})
        return resource_pin(resource=resource, digest=digest, actor=actor, freeze_override=freeze_override,
                            request_kind=ChangeRequest.Kind.PROMOTE)


def reconcile_request(*, resource: Resource, actor=None) -> None:
    """Ask for a reconcile now (operators' "Reconcile now", "Retry")."""
    with audit.attempt("resource.reconcile", actor=actor, target=resource):
        require_change_environment(actor, resource.environment, "reconcile resources")
        signals.reconcile_requested.send(sender=Resource, resource_ids=[resource.pk])


# --- approvals: changes of what runs that wait for maintainers -----------------------------------


def _freeze_gate(resource: Resource, source: dict, actor, override: str, entry, *, validate_only: bool) -> None:
    """During a freeze a person's change of what runs needs a maintainer's override (recorded)."""
    made = freeze.gate_person_change(resource=resource, actor=actor, to_digest=_prospective_digest(resource, source),
                                     override=override, validate_only=validate_only)
    if made is not None:
        entry.describe(changes={"freeze_override": made.reason})


def _kind_of(resource: Resource, source: dict) -> str:
    if source["source_type"] == SourceType.PROMOTE and source["binding"] == Binding.PIN_DIGEST:
        return ChangeRequest.Kind.PIN_EDIT
    if source["source_type"] == SourceType.PROMOTE and source["binding"] == Binding.TRACK_LATEST:
        return ChangeRequest.Kind.TRACK_LATEST
    return ChangeRequest.Kind.SOURCE


def _prospective_digest(resource: Resource, source: dict) -> str:
    """The digest `resource` would run with `source` ("" when that isn't known yet)."""
    prospective = Resource(**{field: getattr(resource, field) for field in ("id", "environment_id", "artifact_floor")})
    for field, value in source.items():
        setattr(prospective, field, value)
    if prospective.source_type == SourceType.IMAGE:
        parsed = rules.check_image_reference(prospective.image)
        return parsed.digest or ""
    return desired_source(prospective)[0]


def _stored_source(source: dict) -> dict:
    return {field: (value.pk if isinstance(value, Resource) else value) for field, value in source.items()}


def _supersede_open(resource: Resource, *, automatic_only: bool = False) -> None:
    """A newer request replaces what is still open for the resource (an automatic candidate
    replaces only older automatic ones: a person's request is not dropped by a new build)."""
    open_requests = ChangeRequest.objects.select_for_update().filter(resource=resource, status__in=ChangeRequest.OPEN)
    if automatic_only:
        open_requests = open_requests.filter(kind=ChangeRequest.Kind.AUTOMATIC)
    for older in open_requests:
        older.status, older.decided_at = ChangeRequest.Status.SUPERSEDED, timezone.now()
        older.save(update_fields=["status", "decided_at"])
        signals.change_request_decided.send(sender=ChangeRequest, request=older)


def _request_change(resource: Resource, source: dict, kind: str, actor) -> ChangeRequest:
    _supersede_open(resource)
    request = ChangeRequest.objects.create(
        resource=resource, kind=kind, source=_stored_source(source), from_digest=resource.current_digest,
        to_digest=_prospective_digest(resource, source), required=resource.environment.required_approvals,
        requested_by=_actor_user(actor),
    )
    reason = _person_reason(source.get("binding"), kind)
    signals.change_requested.send(sender=ChangeRequest, request=request, reason=reason, actor=actor)
    _announce(request, "approval.requested", actor)
    return request


def _announce(request: ChangeRequest, event: str, actor, reason: str = "") -> None:
    resource = request.resource
    signals.event_happened.send(sender=ChangeRequest, project=resource.environment.project, event=event, data={
        "environment": resource.environment.slug, "resource": resource.name, "request_id": request.pk,
        "kind": request.kind, "digest": request.to_digest, "from_digest": request.from_digest,
        "approvals": request.decisions.filter(approved=True).count(), "required": request.required,
        "actor": str(actor) if _actor_user(actor) else (actor or "Hoist"), "reason": reason,
    })


def change_request_automatic(*, resource: Resource, to_digest: str) -> ChangeRequest:
    """The engine found a digest track-latest would take, in an environment that wants automatic
    changes approved: the open request for it (made once)."""
    with audit.attempt("change_request.create", target=resource, actor_label="Hoist (track latest)",
                       changes={"digest": to_digest}) as entry:
        locked = Resource.objects.select_for_update(no_key=True).select_related("environment__project").get(pk=resource.pk)
        existing = locked.change_requests.filter(kind=ChangeRequest.Kind.AUTOMATIC, to_digest=to_digest,
                                                 status__in=ChangeRequest.OPEN).first()
        if existing is not None:
            entry.skip()
            return existing
        _supersede_open(locked, automatic_only=True)
        request = ChangeRequest.objects.create(
            resource=locked, kind=ChangeRequest.Kind.AUTOMATIC, from_digest=locked.current_digest, to_digest=to_digest,
            required=max(1, locked.environment.required_approvals),
        )
        signals.change_requested.send(sender=ChangeRequest, request=request, reason=ChangeReason.TRACK_LATEST, actor=None)
        _announce(request, "approval.requested", None)
        entry.describe(changes={"change_request": request.pk})
    return request


def _require_decider(request: ChangeRequest, actor, what: str) -> None:
    require_role(actor, request.resource.environment.project, Role.MAINTAINER, what)
    if request.requested_by_id and _actor_user(actor) is not None and actor.pk == request.requested_by_id:
        raise ValidationError({"request": ["You asked for this change: another maintainer decides on it."]})
    if request.decisions.filter(user=actor).exists():
        raise ValidationError({"request": ["You already decided on this request."]})


def change_request_may_decide(*, request: ChangeRequest, actor) -> None:
    """What approving or rejecting would refuse, without writing (forms show it next to the field)."""
    if request.status != ChangeRequest.Status.AWAITING:
        raise ValidationError({"request": [f"This request is {request.get_status_display().lower()}: it can't be decided."]})
    _require_decider(request, actor, "decide on changes")


def _locked_request(request: ChangeRequest, *, what: str) -> ChangeRequest:
    locked = (ChangeRequest.objects.select_for_update(of=("self",))
              .select_related("resource__environment__project", "requested_by").get(pk=request.pk))
    if locked.status != ChangeRequest.Status.AWAITING:
        raise ValidationError({"request": [f"This request is {locked.get_status_display().lower()}: it can't be {what}."]})
    return locked


def change_request_approve(*, request: ChangeRequest, actor=None, reason: str = "", freeze_override: str = "") -> ChangeRequest:
    """One maintainer's approval; the last one needed applies the change (unless the environment
    is frozen and no override is given: then it is applied when the freeze ends)."""
    with audit.attempt("change_request.approve", actor=actor, target=request.resource,
                       changes={"change_request": request.pk}) as entry:
        locked = _locked_request(request, what="approved")
        _require_decider(locked, actor, "approve changes")
        Approval.objects.create(request=locked, user=actor, approved=True, reason=reason[:2000])
        approvals = locked.decisions.filter(approved=True).count()
        entry.describe(changes={"approvals": f"{approvals}/{locked.required}"})
        if approvals >= locked.required:
            locked.status, locked.decided_at = ChangeRequest.Status.APPROVED, timezone.now()
            locked.save(update_fields=["status", "decided_at"])
            _announce(locked, "approval.approved", actor, reason)
            _apply_approved(locked, actor=actor, freeze_override=freeze_override)
    return locked


def change_request_reject(*, request: ChangeRequest, actor=None, reason: str = "") -> ChangeRequest:
    """One rejection (with a reason) rejects the request."""
    with audit.attempt("change_request.reject", actor=actor, target=request.resource,
                       changes={"change_request": request.pk, "reason": reason}) as entry:
        if not reason.strip():
            raise ValidationError({"reason": ["Say why the change is rejected."]})
        locked = _locked_request(request, what="rejected")
        _require_decider(locked, actor, "reject changes")
        Approval.objects.create(request=locked, user=actor, approved=False, reason=reason[:2000])
        locked.status, locked.decided_at, locked.reason = ChangeRequest.Status.REJECTED, timezone.now(), reason[:2000]
        locked.save(update_fields=["status", "decided_at", "reason"])
        signals.change_request_decided.send(sender=ChangeRequest, request=locked)
        _announce(locked, "approval.rejected", actor, reason)
        entry.describe(target=locked.resource)
    return locked


def change_request_cancel(*, request: ChangeRequest, actor=None) -> ChangeRequest:
    """The requester (or a maintainer) withdraws a request still awaiting approval."""
    with audit.attempt("change_request.cancel", actor=actor, target=request.resource,
                       changes={"change_request": request.pk}):
        locked = _locked_request(request, what="cancelled")
        if not (locked.requested_by_id and _actor_user(actor) is not None and actor.pk == locked.requested_by_id):
            require_role(actor, locked.resource.environment.project, Role.MAINTAINER, "cancel others' requests")
        locked.status, locked.decided_at = ChangeRequest.Status.CANCELLED, timezone.now()
        locked.save(update_fields=["status", "decided_at"])
        signals.change_request_decided.send(sender=ChangeRequest, request=locked)
    return locked


def _apply_approved(request: ChangeRequest, *, actor, freeze_override: str = "") -> None:
    resource = request.resource
    if request.kind == ChangeRequest.Kind.AUTOMATIC:
        # Nothing to write: the engine takes an approved digest (promotions.governance).
        signals.change_request_decided.send(sender=ChangeRequest, request=request)
        return
    if freeze.current(resource.environment) is not None and not freeze_override:
        signals.change_request_decided.send(sender=ChangeRequest, request=request)
        return  # approved; applied when the freeze ends (change_requests_apply_approved)
    source = dict(request.source)
    if source.get("promote_from") is not None:
        source["promote_from"] = Resource.objects.filter(pk=source["promote_from"]).first()
        if source["promote_from"] is None:
            raise ValidationError({"request": ["The upstream this change promotes from was deleted meanwhile."]})
    resource_update(resource=resource, actor=actor, approved=request, freeze_override=freeze_override, **source)
    request.status = ChangeRequest.Status.APPLIED
    request.save(update_fields=["status"])


def change_requests_apply_approved(environment: Environment) -> int:
    """The freeze on `environment` ended: apply the changes approved meanwhile (the newest per
    resource; older ones were superseded when it was asked for)."""
    done = 0
    waiting = ChangeRequest.objects.filter(resource__environment=environment, status=ChangeRequest.Status.APPROVED
                                           ).exclude(kind=ChangeRequest.Kind.AUTOMATIC).select_related("resource")
    for request in waiting:
        with audit.attempt("change_request.apply", target=request.resource, actor_label="Hoist (freeze ended)",
                           changes={"change_request": request.pk}):
            _apply_approved(request, actor=None)
        done += 1
    return done
