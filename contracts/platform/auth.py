"""API tokens as LangGraph's clients send them."""

from __future__ import annotations

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tenants.authentication import ApiTokenAuthentication, url_tenant_slug

# Agent Inbox can only send `x-api-key`; the SDKs send it from `api_key=`, or any header
# (Authorization: Bearer) through `headers=`.
_SCHEMES = (b"bearer", b"token")


class PlatformTokenAuthentication(authentication.BaseAuthentication):
    """`x-api-key: <token>`, `Authorization: Bearer <token>` (or `Token <token>`): our
    API tokens, checked by the REST API's own token authentication (hashed lookup,
    revoked, inactive user)."""

    def authenticate(self, request: Request):
        key = request.headers.get("x-api-key")
        if key is None:
            parts = authentication.get_authorization_header(request).split()
            if not parts or parts[0].lower() not in _SCHEMES:
                return None
            if len(parts) != 2:
                raise exceptions.AuthenticationFailed("Invalid Authorization header: give one token.")
            key = parts[1].decode(errors="replace")
        return ApiTokenAuthentication().authenticate_credentials(key.strip(), tenant_slug=url_tenant_slug(request))

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to a request without credentials.
        return 'Bearer realm="api"'


try:
    from drf_spectacular.extensions import OpenApiAuthenticationExtension
except ImportError:  # pragma: no cover - drf-spectacular is a dependency
    OpenApiAuthenticationExtension = None

if OpenApiAuthenticationExtension is not None:

    class PlatformTokenScheme(OpenApiAuthenticationExtension):
        """The OpenAPI document's name for this authentication: an API key in
        `x-api-key`, or the same token as a bearer token."""

        target_class = "contracts.platform.auth.PlatformTokenAuthentication"
        name = ["apiKeyAuth", "bearerAuth"]

        def get_security_definition(self, auto_schema):
            return [
                {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "An API token (the same tokens as the REST API's).",
                },
                {"type": "http", "scheme": "bearer", "description": "An API token as Authorization: Bearer <token>."},
            ]
