from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from tenants.models import ApiToken


class TokenRateThrottle(SimpleRateThrottle):
    """One budget per API token (a user's several tokens are counted apart), or per
    user for session clients. Over it: 429 with Retry-After."""

    scope = "token"

    def get_rate(self) -> str:
        # Read at call time, not import time, so settings overrides apply.
        return settings.API_THROTTLE_RATE

    def get_cache_key(self, request, view) -> str | None:
        if isinstance(request.auth, ApiToken):
            ident = f"token-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            return None  # anonymous requests are refused by authentication anyway
        return self.cache_format % {"scope": self.scope, "ident": ident}
