"""What a page of the resource list reads: only the columns it shows, and what its rows need
beyond their own columns once for the page, in a fixed number of queries.

A list of 500 resources used to read every column of every row and of each upstream
(`applied_versions` parsed, `database_url` decrypted 500 times over), build an Environment
per row, and decrypt every environment variable, secrets included, to write `null` for them.
Now the database says whether a secret is set and never sends its value.
"""

from __future__ import annotations

from django.db.models import BooleanField, Case, ExpressionWrapper, F, Q, QuerySet, Value, When
from django.utils import timezone

from environments import keeps, selectors
from environments.fields import EncryptedTextField
from environments.models import Environment, EnvVar, Resource

# What the representation (ResourceSerializer) and the status it shows (environments.display,
# keeps.protection) read of a resource and of its upstream. A field missing here would cost a
# query per row: tests/api/test_queries.py counts them.
SHOWN = (
    "id", "environment", "name", "kind", "runtime", "ports", "replicas", "ingress_host", "schedule",
    "source_type", "image", "promote_from", "binding", "pinned_digest", "follow", "soak_seconds",
    "rollback_on_failure", "progress_deadline_seconds", "current_digest", "current_image", "phase", "message",
    "reconciled_at", "healthy_digest", "healthy_at", "rollout_ready", "rollout_total", "failed_digest",
    "backoff_until", "failures_in_a_row", "created_at", "updated_at",
    "promote_from__name", "promote_from__current_image", "promote_from__environment",
    "promote_from__environment__slug", "promote_from__environment__cluster_id",
)


def _is_set(field: str) -> ExpressionWrapper:
    # Encrypted fields store "" for empty and ciphertext otherwise: set without decrypting.
    return ExpressionWrapper(~Q(**{field: ""}), output_field=BooleanField())


def resource_list(environment: Environment) -> QuerySet[Resource]:
    """The environment's resources as the list shows them, in its order."""
    return (
        Resource.objects.filter(environment=environment)
        .only(*SHOWN)
        .select_related("promote_from__environment")
        .annotate(awaiting_approval=selectors.awaiting_approval(), database_url_set=_is_set("database_url"))
        # Names are unique in an environment: the same order as ("name", "pk"), which PostgreSQL got by
        # sorting every row of the environment, joined; by name alone it walks the (environment, name)
        # index and stops at the page's end.
        .order_by("name")
    )


def env_of(resources: list[Resource]) -> dict[int, list[dict]]:
    """Each resource's environment variables as the API shows them, in one query. Secret values stay in the
    database: only whether they are set comes back, so they are never decrypted for a list."""
    if not resources:
        return {}
    shown_value = Case(When(secret=False, then=F("value")), default=Value(None), output_field=EncryptedTextField())
    rows = (EnvVar.objects.filter(resource_id__in=[r.pk for r in resources])  # EnvVar's own order, as prefetching had
            .annotate(shown_value=shown_value, is_set=_is_set("value"))
            .values_list("resource_id", "name", "shown_value", "secret", "is_set"))
    found: dict[int, list[dict]] = {}
    for resource_id, name, value, secret, is_set in rows:
        found.setdefault(resource_id, []).append(
            {"name": name, "value": None if secret else value, "secret": secret, "set": bool(is_set)})
    return found


def page_context(page: list[Resource], environment: Environment) -> dict:
    """What ResourceSerializer needs for a page of `resource_list`, read once for the page."""
    cache = Resource._meta.get_field("environment")
    for resource in page:
        cache.set_cached_value(resource, environment)  # every row's (as select_related would): no join, no copy
    return {
        "env": env_of(page),
        "watches": selectors.tag_watches_for(page),
        "protection": keeps.protection(page),
        "now": timezone.now(),
    }
