import datetime

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from promotions.models import Promotion


class UTCDateTimeField(IsoDateTimeField):
    """ISO 8601, normalised to UTC here (a database may refuse odd offsets such as +17:01)."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is not None and parsed.tzinfo is not None:
            try:
                parsed = parsed.astimezone(datetime.timezone.utc)
            except OverflowError:
                raise forms.ValidationError("Date out of range.", code="invalid") from None
        return parsed


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


class PromotionFilter(django_filters.FilterSet):
    environment = django_filters.CharFilter(field_name="resource__environment__slug", help_text="Environment slug.")
    resource = django_filters.CharFilter(field_name="resource__name", help_text="Resource name.")
    status = django_filters.MultipleChoiceFilter(choices=Promotion.Status.choices)
    reason = django_filters.MultipleChoiceFilter(choices=Promotion.Reason.choices)
    queued_after = UTCDateTimeFilter(field_name="queued_at", lookup_expr="gte", help_text="ISO 8601 date-time.")
    queued_before = UTCDateTimeFilter(field_name="queued_at", lookup_expr="lt", help_text="ISO 8601 date-time.")

    class Meta:
        model = Promotion
        fields = ["environment", "resource", "status", "reason", "queued_after", "queued_before"]
