"""Which door a write came through (web page, admin, API, webhook, command), for the audit trail.

The door is a context variable: `DoorMiddleware` sets it for each request
from the URL prefix, management commands and tasks set it with `door()`.
Services never take the door as an argument, so no caller can forget or
mislabel it, and nothing below the doors needs to know about requests.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

# URL prefixes and the door they are; anything else is a browser page.
PREFIXES = (("/api/", "api"), ("/admin/", "admin"), ("/hooks/", "webhook"))
WEB = "web"
SYSTEM = "system"


@dataclass(frozen=True)
class Door:
    via: str
    request: Any = None  # the HttpRequest, for the caller's address, user agent and API token


_current: contextvars.ContextVar[Door] = contextvars.ContextVar("hoist_door", default=Door(SYSTEM))


def current() -> Door:
    return _current.get()


@contextmanager
def door(via: str, request: Any = None) -> Iterator[Door]:
    """Run the block as door `via` (e.g. "command" in a management command)."""
    value = Door(via, request)
    token = _current.set(value)
    try:
        yield value
    finally:
        _current.reset(token)


def via_for_path(path: str) -> str:
    for prefix, via in PREFIXES:
        if path.startswith(prefix):
            return via
    return WEB


class DoorMiddleware:
    """Names the door of every request (see the module docstring)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with door(via_for_path(request.path_info), request):
            return self.get_response(request)
