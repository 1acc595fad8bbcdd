"""ASGI entry point: daphne serves the HTTP pages and the websockets of pgnotify."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyproject.settings")
# Django must be set up before anything imports models (consumers, auth middleware).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

import pgnotify.contrib.chat.routing  # noqa: E402
import pgnotify.routing  # noqa: E402
from pgnotify.web.security import OriginValidator  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    # Origin checked with scheme, host and port (channels' AllowedHostsOriginValidator ignores the port).
    "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(
        pgnotify.routing.websocket_urlpatterns + pgnotify.contrib.chat.routing.websocket_urlpatterns))),
})
