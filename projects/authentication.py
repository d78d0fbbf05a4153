"""API authentication: per-user tokens in `Authorization: Bearer <key>` (or `Token <key>`).

Keys are looked up by their SHA-256, so the database never holds one. A
revoked, expired or unknown key is a 401 naming which it is (the key itself
is never echoed or logged).
"""

from __future__ import annotations

from rest_framework import authentication, exceptions

from . import services

KEYWORDS = ("bearer", "token")


class TokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() not in KEYWORDS:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use 'Bearer <token>'.")
        try:
            key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        token = services.token_for_key(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        state = token.state()
        if state != "active":
            raise exceptions.AuthenticationFailed(f"This token is {state}.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("This token's user is inactive.")
        services.token_touch(token)
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class PasswordAuthentication(authentication.BasicAuthentication):
    """HTTP Basic with the account password: accepted only where a token is created.

    Failures count towards the login lockout (django-axes) like the login page's: it
    is handed Django's request, which the lockout middleware looks at, not DRF's wrapper.
    """

    www_authenticate_realm = "api"

    def authenticate_credentials(self, userid, password, request=None):
        if "\x00" in userid or "\x00" in password:
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        return super().authenticate_credentials(userid, password, getattr(request, "_request", request))
