"""How a refusal reads as one line, wherever it is shown or recorded (admin messages, the audit trail)."""

from __future__ import annotations

from django.core.exceptions import ValidationError


def refusal_text(exc: Exception) -> str:
    """`field: message …` for a ValidationError keyed by field; the message otherwise."""
    if isinstance(exc, ValidationError) and hasattr(exc, "message_dict"):
        return " ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)
