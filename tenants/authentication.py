from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from config.compiled_sql import CompiledQuery, placeholder_str
from tenants.models import ApiToken

# Read on every authenticated request: compiled once (config.compiled_sql).
_LIVE_TOKEN_BY_HASH = CompiledQuery(
    lambda key_hash: ApiToken.objects.select_related("user").filter(key_hash=key_hash, revoked_at__isnull=True)[:1],
    key_hash=placeholder_str(1),
)


class ApiTokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>` or `Authorization: Bearer <key>` against hashed
    ApiToken rows. Bearer is what most HTTP clients and agent frameworks send for an
    opaque token; both words name the same credential."""

    keyword = "Token"
    keywords = (b"token", b"bearer")

    def authenticate(self, request: Request):
        auth = authentication.get_authorization_header(request).split()
        if not auth or auth[0].lower() not in self.keywords:
            return None
        # From here on exactly as DRF's TokenAuthentication, for either keyword.
        if len(auth) == 1:
            raise exceptions.AuthenticationFailed("Invalid token header. No credentials provided.")
        if len(auth) > 2:
            raise exceptions.AuthenticationFailed("Invalid token header. Token string should not contain spaces.")
        try:
            key = auth[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed(
                "Invalid token header. Token string should not contain invalid characters."
            ) from None
        return self.authenticate_credentials(key)

    def authenticate_credentials(self, key: str):
        token = _LIVE_TOKEN_BY_HASH.first(key_hash=ApiToken.hash_key(key))
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        return (token.user, token)


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI document describes the credential: either keyword."""

    target_class = ApiTokenAuthentication
    name = "tokenAuth"
    priority = 1  # over drf-spectacular's own scheme for TokenAuthentication, which says "Token" only

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": 'An API token, as "Token <key>" or "Bearer <key>".'}
