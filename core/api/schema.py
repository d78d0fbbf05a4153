"""OpenAPI generation: every operation documents the errors it can answer, with the one error body."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as BaseAutoSchema

from .errors import ErrorSerializer

ERROR_DESCRIPTIONS = {
    "400": "Invalid input: `errors` names each field at fault.",
    "401": "No credentials, or a wrong, expired or revoked token.",
    "403": "You can see this but your role does not allow the change.",
    "404": "No such object, or it is in a project you are not a member of.",
    "405": "Method not allowed.",
    "406": "Only application/json responses are available.",
    "409": "The change conflicts with the current state (e.g. others promote from this resource).",
    "412": "If-Match does not match the current ETag: someone changed the resource since you read it.",
    "413": "The request body is too large.",
    "415": "Request bodies must be application/json.",
    "428": "This change needs an If-Match header carrying the ETag from a GET (or `*`).",
    "503": "A registry Hoist needs for this request could not be reached; retry later (see Retry-After).",
}


class AutoSchema(BaseAutoSchema):
    # Views may list extra codes (e.g. 409, 412, 428) in `extra_error_codes`.
    def error_codes(self) -> list[str]:
        codes = ["400", "401", "403", "404", "406"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["413", "415"]
        codes += [str(c) for c in getattr(self.view, "extra_error_codes", {}).get(self.method, ())]
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self.error_codes():
            if code not in responses:
                response = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                response["description"] = ERROR_DESCRIPTIONS.get(code, "Error.")
                responses[code] = response
        return responses
