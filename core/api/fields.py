"""Serializer building blocks: JSON types are checked as sent (no "3" for 3), unknown keys refused.

These check shape and type only; the rules themselves (what a valid name,
port or digest is) live in the services, which every entry point calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone as dt_timezone

from rest_framework import ISO_8601, serializers
from rest_framework.fields import empty
from rest_framework.settings import api_settings


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "Must be a whole number."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know (each named), besides the usual checks.

    Read-only fields (e.g. `status`) are known: sending back what a GET
    returned is allowed, and they are ignored.
    """

    def to_internal_value(self, data):
        unknown = {}
        if isinstance(data, Mapping):
            unknown = {str(key): ["Unknown field."] for key in data if key not in self.fields}
            self.read_only_sent = {key: data[key] for key in data if key in self.fields and self.fields[key].read_only}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown and isinstance(exc.detail, dict):
                raise serializers.ValidationError({**unknown, **exc.detail}) from None
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value

    def refuse_changes(self, current: dict) -> None:
        """Read-only fields may be sent back as they are, never changed (`current`: their values now)."""
        sent = getattr(self, "read_only_sent", {})
        errors = {
            field: [f"The {field} can't change (it is {value!r})."]
            for field, value in current.items()
            if field in sent and sent[field] != value
        }
        if errors:
            raise serializers.ValidationError(errors)

    def run_validation(self, data=empty):
        if data is None and not self.allow_null:
            # A null object ("config": null) is a type error, not "no data".
            raise serializers.ValidationError({"non_field_errors": ["Must be an object."]})
        return super().run_validation(data)


def datetime_writer():
    """DRF's `DateTimeField().to_representation`, with the time zone and the format looked up once:
    for a page of rows (a list writes thousands of datetimes). Same text: ISO 8601 in the current
    time zone, `Z` for UTC; anything unusual (naive, a string, another format) goes to DRF itself."""
    field = serializers.DateTimeField()
    output_format = getattr(field, "format", api_settings.DATETIME_FORMAT)
    zone = field.default_timezone()
    if zone is None or output_format is None or output_format.lower() != ISO_8601:
        return field.to_representation
    # The database hands back datetimes in datetime.timezone.utc: when the current zone is UTC too
    # (zoneinfo's, another object), converting changes nothing but costs a call per value.
    in_utc = zone is dt_timezone.utc or str(zone) in ("UTC", "Etc/UTC")

    def write(value):
        if not value:
            return None
        if in_utc and type(value) is datetime and value.tzinfo is dt_timezone.utc:
            return value.isoformat()[:-6] + "Z"
        if not isinstance(value, datetime) or value.utcoffset() is None:
            return field.to_representation(value)
        text = value.astimezone(zone).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return write
