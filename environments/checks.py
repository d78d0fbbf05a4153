"""System checks: settings that would only fail later, at the first secret read or written."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def credentials_keys(app_configs=None, **kwargs):
    from cryptography.fernet import Fernet

    errors = []
    for position, key in enumerate(settings.HOIST_CREDENTIALS_KEYS, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            errors.append(Error(
                f"HOIST_CREDENTIALS_KEY: key #{position} is not a Fernet key (32 url-safe base64-encoded bytes).",
                hint="Generate one with: python -c 'from cryptography.fernet import Fernet; "
                     "print(Fernet.generate_key().decode())'",
                id="hoist.E001",
            ))
    return errors
