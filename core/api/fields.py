"""Serializer building blocks: JSON types are checked as sent (no "3" for 3), unknown keys refused.

These check shape and type only; the rules themselves (what a valid name,
port or digest is) live in the services, which every entry point calls.
"""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.fields import empty


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
