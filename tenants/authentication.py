from __future__ import annotations

from django.db.models import F
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from config.compiled_sql import CompiledQuery, placeholder_str
from tenants.models import ApiToken, Membership

# Read on every authenticated request: compiled once (config.compiled_sql).
_LIVE_TOKEN_BY_HASH = CompiledQuery(
    lambda key_hash: ApiToken.objects.select_related("user").filter(key_hash=key_hash, revoked_at__isnull=True)[:1],
    key_hash=placeholder_str(1),
)


def _token_with_membership_get(*, key_hash: str, slug: str) -> ApiToken | None:
    """The live token behind `key_hash`, with its user and, as `membership_here`, the
    user's membership of the tenant `slug` (with its tenant): the two reads every
    tenant request with a token starts with, in one query. None when there is no such
    token, or its user is no member of that tenant (the caller tells the two apart)."""
    membership = _MEMBERSHIP_BY_TOKEN.first(key_hash=key_hash, slug=slug)
    if membership is None:
        return None
    columns = {"id": membership.token_id, "user_id": membership.user_id, "name": membership.token_name,
               "key_hash": key_hash, "prefix": membership.token_prefix, "created_at": membership.token_created_at,
               "revoked_at": None}
    token = ApiToken.from_db("default", None, [columns[f.attname] for f in ApiToken._meta.concrete_fields])
    token.user = membership.user
    token.membership_here = membership
    return token


# Compiled once. The token's columns come from the join the filter makes (an annotation
# after a filter reuses its join), so this is one row per (membership, live token).
_MEMBERSHIP_BY_TOKEN = CompiledQuery(
    lambda key_hash, slug: Membership.objects.select_related("tenant", "user")
    .filter(tenant__slug=slug, user__api_tokens__key_hash=key_hash, user__api_tokens__revoked_at__isnull=True)
    .annotate(token_id=F("user__api_tokens__id"), token_name=F("user__api_tokens__name"),
              token_prefix=F("user__api_tokens__prefix"), token_created_at=F("user__api_tokens__created_at"))[:1],
    key_hash=placeholder_str(1), slug=placeholder_str(2),
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
        return self.authenticate_credentials(key, tenant_slug=url_tenant_slug(request))

    def authenticate_credentials(self, key: str, tenant_slug: str | None = None):
        """(user, token). Given the tenant of the URL, the caller's membership of it is
        read in the same query and left on the token as `membership_here`, for the
        tenant view (tenants.apis.TenantAPIView) to use instead of reading it again."""
        key_hash = ApiToken.hash_key(key)
        token = _token_with_membership_get(key_hash=key_hash, slug=tenant_slug) if tenant_slug else None
        if token is None:  # no membership there (a 404 for the view), or no such token
            token = _LIVE_TOKEN_BY_HASH.first(key_hash=key_hash)
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        return (token.user, token)


def url_tenant_slug(request: Request) -> str | None:
    slug = ((getattr(request, "parser_context", None) or {}).get("kwargs") or {}).get("tenant_slug")
    return slug if isinstance(slug, str) else None


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI document describes the credential: either keyword."""

    target_class = ApiTokenAuthentication
    name = "tokenAuth"
    priority = 1  # over drf-spectacular's own scheme for TokenAuthentication, which says "Token" only

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": 'An API token, as "Token <key>" or "Bearer <key>".'}
