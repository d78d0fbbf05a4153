"""How the API's own authentication classes appear in the OpenAPI schema (registered on import)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "projects.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A per-user API token: `Authorization: Bearer hoist_…` (`Token hoist_…` also works).",
        }


class PasswordScheme(OpenApiAuthenticationExtension):
    target_class = "projects.authentication.PasswordAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "basic", "description": "Username and password; only to create tokens."}
