"""pgnotify's websocket routes, for the project's ASGI application:
`URLRouter(pgnotify.routing.websocket_urlpatterns)`: the dashboard's (the admin's live notices use
it too) and the live streams'.

A contrib app brings its own routes, for the project to add: the chat's are
`pgnotify.contrib.chat.routing.websocket_urlpatterns`.
"""

from .web.routing import websocket_urlpatterns

__all__ = ["websocket_urlpatterns"]
