from rest_framework import serializers

from promotions.models import Promotion


class PromotionSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="resource.environment.slug")
    resource = serializers.CharField(source="resource.name")
    from_digest = serializers.SerializerMethodField()
    actor = serializers.CharField(source="who", help_text="The user who asked, or what did (e.g. Hoist, a webhook).")
    artifact_sequence = serializers.IntegerField(source="artifact.sequence", allow_null=True, default=None)

    class Meta:
        model = Promotion
        fields = ["id", "environment", "resource", "from_digest", "to_digest", "reason", "status", "error", "attempts",
                  "actor", "artifact_sequence", "queued_at", "applied_at", "latency_s", "healthy_at", "healthy_latency_s"]

    def get_from_digest(self, promotion) -> str | None:
        return promotion.from_digest or None


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
