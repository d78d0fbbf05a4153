from rest_framework import serializers

from core.api.fields import datetime_writer
from promotions.models import Duration, Promotion


class PromotionSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="resource.environment.slug")
    resource = serializers.CharField(source="resource.name")
    from_digest = serializers.SerializerMethodField()
    actor = serializers.CharField(source="who", help_text="The user who asked, or what did (e.g. Hoist, a webhook).")
    artifact_sequence = serializers.IntegerField(source="artifact.sequence", allow_null=True, default=None)
    cause = serializers.ChoiceField(
        choices=Promotion.Cause.choices, read_only=True,
        help_text="What caused it: `reason`, except `approval` for a change applied after its approvals.")
    duration_from = serializers.ChoiceField(
        source="duration.start", choices=Duration.STARTS, read_only=True,
        help_text="What `applied_seconds` and `healthy_seconds` count from: `publish` (publish, track latest), "
                  "`requested` (a person's change), `approved` (the last approval), `detected` (drift, rollback).")
    applied_seconds = serializers.FloatField(source="duration.applied_s", read_only=True, allow_null=True,
                                             help_text="Seconds from `duration_from` to applied (null: not applied).")
    healthy_seconds = serializers.FloatField(source="duration.healthy_s", read_only=True, allow_null=True,
                                             help_text="Seconds from `duration_from` to healthy (null: not healthy).")

    class Meta:
        model = Promotion
        fields = ["id", "environment", "resource", "from_digest", "to_digest", "reason", "cause", "status", "error",
                  "attempts", "actor", "artifact_sequence", "queued_at", "applied_at", "healthy_at", "duration_from",
                  "applied_seconds", "healthy_seconds", "latency_s", "healthy_latency_s"]
        extra_kwargs = {
            "latency_s": {"help_text": "Seconds from the image's first publish in the project to applied, whatever the "
                                       "cause (for a person's change it counts their think time: see applied_seconds)."},
            "healthy_latency_s": {"help_text": "Seconds from the image's first publish in the project to healthy."},
        }

    def get_from_digest(self, promotion) -> str | None:
        return promotion.from_digest or None

    _when = None

    def to_representation(self, promotion: Promotion) -> dict:
        """The fields above, written by hand (DRF's field by field machinery was most of a history
        page's time): same keys, order and values (tests/api/test_list_representation.py)."""
        if self._when is None:
            self._when = datetime_writer()  # once per serializer: a list's rows share it
        when = self._when
        duration = promotion.duration  # its cause decides it once for three fields
        if "listed_resource" in promotion.__dict__:  # the API's queries annotate these (promotions.api.views._shown)
            environment, resource, sequence = promotion.listed_environment, promotion.listed_resource, promotion.listed_sequence
        else:
            environment, resource = promotion.resource.environment.slug, promotion.resource.name
            sequence = promotion.artifact.sequence if promotion.artifact_id is not None else None
        return {
            "id": promotion.id,
            "environment": environment,
            "resource": resource,
            "from_digest": promotion.from_digest or None,
            "to_digest": promotion.to_digest,
            "reason": promotion.reason,
            "cause": promotion.cause,
            "status": promotion.status,
            "error": promotion.error,
            "attempts": promotion.attempts,
            "actor": str(promotion.who),
            "artifact_sequence": sequence,
            "queued_at": when(promotion.queued_at),
            "applied_at": when(promotion.applied_at),
            "healthy_at": when(promotion.healthy_at),
            "duration_from": duration.start,
            "applied_seconds": _float(duration.applied_s),
            "healthy_seconds": _float(duration.healthy_s),
            "latency_s": _float(promotion.latency_s),
            "healthy_latency_s": _float(promotion.healthy_latency_s),
        }


def _float(value) -> float | None:
    return None if value is None else float(value)


class QueuedPublishSerializer(serializers.Serializer):
    """A publish by tag the registry was too slow for: resolved and published in the background."""

    status = serializers.SerializerMethodField(help_text="Always `queued`.")
    repository = serializers.CharField()
    tag = serializers.CharField()
    detail = serializers.SerializerMethodField()
    retry_at = serializers.DateTimeField(help_text="When Hoist tries the registry next (it keeps trying for about 10 minutes).")

    def get_status(self, queued) -> str:
        return "queued"

    def get_detail(self, queued) -> str:
        return (f"Not published yet: {queued.reason}. Hoist will resolve {queued.repository}:{queued.tag} "
                "and publish it in the background; the artifact list and the audit log show the outcome.")
