"""pgnotify's websocket routes, for the project's ASGI application:
`URLRouter(pgnotify.routing.websocket_urlpatterns)`.

The dashboard's, and the chat's when pgnotify.contrib.chat is installed.
"""

from django.apps import apps

from .web.routing import websocket_urlpatterns as _web

websocket_urlpatterns = list(_web)
if apps.is_installed("pgnotify.contrib.chat"):
    from .contrib.chat.routing import websocket_urlpatterns as _chat

    websocket_urlpatterns += _chat
