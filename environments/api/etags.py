"""ETags of resources: a keyed hash of what the client can change (name, kind, source, config, env).

Status changes (reconcile writing the phase or the digest running) leave the
ETag alone, so an automation is refused only when someone changed what it
would overwrite. The hash is an HMAC under SECRET_KEY because the input
includes secret values: the ETag must not let anyone test guesses offline.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from django.conf import settings
from django.utils.http import parse_etags

from environments.models import Resource
from core.api.errors import PreconditionFailed, PreconditionRequired


def resource_etag(resource: Resource) -> str:
    spec = {
        "id": resource.pk,
        "name": resource.name,
        "kind": resource.kind,
        "source": [resource.source_type, resource.image, resource.promote_from_id, resource.binding, resource.pinned_digest],
        "config": [resource.runtime, resource.ports, resource.replicas, resource.ingress_host, resource.database_url, resource.schedule],
        "env": sorted((var.name, var.value, var.secret) for var in resource.env_vars.all()),
    }
    blob = json.dumps(spec, sort_keys=True, default=str).encode()
    return '"' + hmac.new(settings.SECRET_KEY.encode(), blob, hashlib.sha256).hexdigest()[:32] + '"'


def check_if_match(request, current: str) -> None:
    """Refuse a change unless If-Match names the current ETag (or is `*`)."""
    header = request.META.get("HTTP_IF_MATCH")
    if header is None or not header.strip():
        raise PreconditionRequired(
            "Send If-Match with the ETag from your last GET of this resource (or If-Match: * to overwrite "
            "whatever is there), so two automations can't overwrite each other's changes silently.",
            errors={"If-Match": ["This header is required."]},
        )
    tags = parse_etags(header)
    if "*" in tags or current in tags:
        return
    raise PreconditionFailed(
        f"The resource changed since you read it; its ETag is now {current}. GET it again, reapply your change "
        f"and send If-Match: {current}.",
        errors={"If-Match": [f"Does not match the current ETag {current}."]},
        headers={"ETag": current},
    )
