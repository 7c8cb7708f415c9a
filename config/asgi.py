"""ASGI entry point: HTTP and websockets from one application, so one server process
(`uvicorn config.asgi:application`) serves both."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.asgi_http import http_application  # noqa: E402

# Set Django up before importing anything that touches models (the consumers do).
django_asgi_app = http_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from config.ws_origin import AllowedHostsBrowserOriginValidator  # noqa: E402
from reviews.routing import websocket_urlpatterns  # noqa: E402

from config.gc_tuning import gc_tune_for_serving  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Origin first: a foreign page is refused before any cookie is read, and a
        # handshake without Origin (not a browser) loses its cookies (config.ws_origin).
        # The session then gives scope["user"]; tickets are checked by the consumer,
        # which knows the tenant from the URL.
        "websocket": AllowedHostsBrowserOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

gc_tune_for_serving()
