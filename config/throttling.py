from __future__ import annotations

import threading

from django.conf import settings
from django.core.cache import BaseCache, caches
from rest_framework.throttling import SimpleRateThrottle

from tenants.models import ApiToken

_shared: tuple[dict, BaseCache] | None = None
_shared_lock = threading.Lock()


def throttle_cache() -> BaseCache:
    """One cache object per process for the throttle.

    Django's `caches` are context-local, so under ASGI every request gets a new cache
    object, and a new RedisCache opens a new connection pool: reading the default cache
    here connected to Redis on every request. One shared object (redis-py's pool is
    thread-safe) keeps its connections. Rebuilt if the settings change (tests)."""
    global _shared
    config = settings.CACHES["default"]
    shared = _shared
    if shared is None or shared[0] != config:
        with _shared_lock:
            if _shared is None or _shared[0] != config:
                _shared = (dict(config), caches.create_connection("default"))
            shared = _shared
    return shared[1]


class TokenRateThrottle(SimpleRateThrottle):
    """One budget per API token (a user's several tokens are counted apart), or per
    user for session clients. Over it: 429 with Retry-After."""

    scope = "token"

    @property
    def cache(self) -> BaseCache:
        return throttle_cache()

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
