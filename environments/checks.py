"""System checks: settings that would only fail later, at the first secret read or written."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


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


@register()
def outbound_policy(app_configs=None, **kwargs):
    from .outbound import Pattern

    errors = []
    for value in settings.HOIST_ALLOWED_REGISTRIES:
        try:
            Pattern.parse(value)
        except ValueError as exc:
            errors.append(Error(
                f"HOIST_ALLOWED_REGISTRIES: {exc}.",
                hint="Use host names (registry.example.com), '*.example.com', addresses or networks "
                     "(10.0.0.0/8), each optionally with ':port'; separate them with commas.",
                id="hoist.E002",
            ))
    return errors


@register(Tags.security, deploy=True)
def private_registries_in_production(app_configs=None, **kwargs):
    if settings.HOIST_ALLOW_PRIVATE_REGISTRIES and not settings.DEBUG and not settings.HOIST_ALLOWED_REGISTRIES:
        return [Warning(
            "HOIST_ALLOW_PRIVATE_REGISTRIES is on: developers' image references may point Hoist at loopback, "
            "private and link-local addresses (the database, the metadata service).",
            hint="List the registries you use in HOIST_ALLOWED_REGISTRIES instead.",
            id="hoist.W001",
        )]
    return []
