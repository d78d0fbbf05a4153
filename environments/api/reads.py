"""What a page of the resource list reads: only the columns it shows, and what its rows need
beyond their own columns once for the page, in a fixed number of queries.

A list of 500 resources used to read every column of every row and of each upstream
(`applied_versions` parsed, `database_url` decrypted 500 times over), build an Environment
per row, and decrypt every environment variable, secrets included, to write `null` for them.
Now the database says whether a secret is set and never sends its value.

The rows come as values, not model instances: `Model.from_db` runs `Model.__init__` over
every field of every row (and select_related builds an upstream and its environment per
row), which was most of a promoted-resource list's time. `resources_of` makes the Resource
objects the serializer, `environments.display` and `environments.keeps` read from those
values, one upstream and one environment per distinct one. The page's ids go to the
page's other queries as a subquery (`ids_of`): 500 ids as parameters cost more to write
into the SQL (Django's lookup and psycopg's client-side binding, per parameter) than the
database takes to find them again.
"""

from __future__ import annotations

import json

from django.db.models import BooleanField, Case, ExpressionWrapper, F, Model, Q, QuerySet, TextField, Value, When
from django.db.models.base import ModelState
from django.db.models.functions import Cast
from django.utils import timezone

from environments import keeps, selectors
from environments.fields import EncryptedTextField
from environments.models import Environment, EnvVar, Resource

# What the representation (ResourceSerializer) and the status it shows (environments.display,
# keeps.protection) read of a resource, by attribute name. A field missing here would cost a
# query per row: tests/api/test_queries.py counts them.
SHOWN = (
    "id", "environment_id", "name", "kind", "runtime", "ports", "replicas", "ingress_host", "schedule",
    "source_type", "image", "promote_from_id", "binding", "pinned_digest", "follow", "soak_seconds",
    "rollback_on_failure", "progress_deadline_seconds", "current_digest", "current_image", "phase", "message",
    "reconciled_at", "healthy_digest", "healthy_at", "rollout_ready", "rollout_total", "failed_digest",
    "backoff_until", "failures_in_a_row", "created_at", "updated_at",
)
ANNOTATED = ("awaiting_approval", "database_url_set")
OWN = SHOWN + ANNOTATED
# ... of its upstream (`source`, keeps' pinned repository) and the upstream's environment (`source.environment`;
# keeps: across clusters or not), as attribute names of the upstream and of its environment.
UPSTREAM = {"promote_from__name": "name", "promote_from__current_image": "current_image",
            "promote_from__environment_id": "environment_id"}
UPSTREAM_ENVIRONMENT = {"promote_from__environment__slug": "slug", "promote_from__environment__cluster_id": "cluster_id"}
COLUMNS = (*OWN, *UPSTREAM, *UPSTREAM_ENVIRONMENT)


def _is_set(field: str) -> ExpressionWrapper:
    # Encrypted fields store "" for empty and ciphertext otherwise: set without decrypting.
    return ExpressionWrapper(~Q(**{field: ""}), output_field=BooleanField())


def resource_list(environment: Environment) -> QuerySet:
    """The environment's resources as the list shows them, in its order: tuples of `COLUMNS`
    (`resources_of` makes them resources)."""
    return (
        Resource.objects.filter(environment=environment)
        .annotate(awaiting_approval=selectors.awaiting_approval(), database_url_set=_is_set("database_url"))
        # Names are unique in an environment: the same order as ("name", "pk"), which PostgreSQL got by
        # sorting every row of the environment, joined; by name alone it walks the (environment, name)
        # index and stops at the page's end.
        .order_by("name")
        # `ports` as the JSON text stored: `resources_of` parses each distinct text once (rows mostly share one).
        .annotate(ports_text=Cast("ports", TextField()))
        .values_list(*(column if column != "ports" else "ports_text" for column in COLUMNS))
    )


def _loaded(model: type[Model], values: dict, using: str, related: dict) -> Model:
    """A `model` instance of these attribute values, as `Model.from_db` would make it for
    `.only()` of them (the others deferred, read if ever touched), without `Model.__init__`'s
    walk over every field and its pre/post_init signals (no receivers here); `related`: the
    related objects, by field, cached as select_related caches them."""
    instance = model.__new__(model)
    instance.__dict__.update(values)
    state = instance._state = ModelState()
    state.adding, state.db = False, using
    state.fields_cache = {model._meta.get_field(name).cache_name: value for name, value in related.items()}
    return instance


def resources_of(rows: list[tuple], environment: Environment, using: str = "default") -> list[Resource]:
    """The Resource objects of a page of `resource_list` rows, with their environment (every
    row's: `environment`) and upstream (one object per upstream, however many rows promote
    from it) cached as select_related would have them: no query, no copy per row."""
    upstream_at, upstream_environment_at = len(OWN), len(OWN) + len(UPSTREAM)
    upstreams: dict[int, Resource] = {}
    upstream_environments: dict[int, Environment] = {}
    ports: dict[str, list] = {}  # by JSON text: rows with the same ports share one (read-only) list
    page = []
    for row in rows:
        values = dict(zip(OWN, row))
        text = values["ports"]
        if text not in ports:
            ports[text] = json.loads(text)
        values["ports"] = ports[text]
        upstream_id = values["promote_from_id"]
        upstream = upstreams.get(upstream_id) if upstream_id is not None else None
        if upstream_id is not None and upstream is None:
            upstream_values = dict(zip(UPSTREAM.values(), row[upstream_at:upstream_environment_at]))
            env_id = upstream_values["environment_id"]
            if env_id not in upstream_environments:
                environment_values = dict(zip(UPSTREAM_ENVIRONMENT.values(), row[upstream_environment_at:]))
                upstream_environments[env_id] = _loaded(Environment, {"id": env_id, **environment_values}, using, {})
            upstream = upstreams[upstream_id] = _loaded(
                Resource, {"id": upstream_id, **upstream_values}, using, {"environment": upstream_environments[env_id]})
        page.append(_loaded(Resource, values, using, {"environment": environment, "promote_from": upstream}))
    return page


def ids_of(rows: QuerySet, page: list[Resource]) -> QuerySet | None:
    """The ids of `page` (resources of `rows`, a `resource_list`, in its order by name) as a
    subquery: the rows whose names lie between the page's first and last. Not the page's
    offset again: a resource created or deleted in between would shift that slice, and rows of
    the page would be shown without their env vars. (One created in the range meanwhile is
    read too, and not shown; names are unique in an environment.)"""
    if not page:
        return None
    return rows.filter(name__gte=page[0].name, name__lte=page[-1].name).order_by().values("pk")


def env_of(resources: list[Resource], ids: QuerySet | None = None) -> dict[int, list[dict]]:
    """Each resource's environment variables as the API shows them, in one query. Secret values stay in the
    database: only whether they are set comes back, so they are never decrypted for a list. `ids`: the
    resources' ids as a subquery, when there is one."""
    if not resources:
        return {}
    shown_value = Case(When(secret=False, then=F("value")), default=Value(None), output_field=EncryptedTextField())
    rows = (EnvVar.objects.filter(resource_id__in=ids if ids is not None else [r.pk for r in resources])
            # EnvVar's own order, as prefetching had
            .annotate(shown_value=shown_value, is_set=_is_set("value"))
            .values_list("resource_id", "name", "shown_value", "secret", "is_set"))
    found: dict[int, list[dict]] = {}
    for resource_id, name, value, secret, is_set in rows:
        found.setdefault(resource_id, []).append(
            {"name": name, "value": None if secret else value, "secret": secret, "set": bool(is_set)})
    return found


def page_context(page: list[Resource], ids: QuerySet | None = None) -> dict:
    """What ResourceSerializer needs for a page of `resources_of` (`ids`: see `env_of`), read once for the page."""
    return {
        "env": env_of(page, ids),
        "watches": selectors.tag_watches_for(page),
        "protection": keeps.protection(page, ids=ids),
        "now": timezone.now(),
    }
