"""Origin checking for websocket handshakes that serves browsers and other clients.

Browsers apply no same-origin policy to websockets but always send `Origin`, and they
attach the site's cookies to the handshake wherever the page came from: without a
check, any site a signed-in user visits could open our sockets as that user. Channels'
AllowedHostsOriginValidator closes that hole but also refuses handshakes with no
`Origin` at all, which is every non-browser client (scripts, agents, the benchmark).

So: a foreign (or `null`) Origin is refused; a handshake from one of our own hosts
passes untouched; a handshake with no Origin passes with its cookies removed, so it can
only authenticate with an explicit credential (a websocket ticket), never a session.
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    async def __call__(self, scope: dict[str, Any], receive, send):
        if scope["type"] == "websocket" and not any(name == b"origin" for name, _ in scope.get("headers", [])):
            headers = [(name, value) for name, value in scope.get("headers", []) if name != b"cookie"]
            return await self.application(dict(scope, headers=headers), receive, send)
        return await super().__call__(scope, receive, send)


def AllowedHostsBrowserOriginValidator(application):  # noqa: N802 - named like Channels' factory
    """BrowserOriginValidator over settings.ALLOWED_HOSTS (the hosts we serve)."""
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)
