"""Websocket routes of the chat, for the project's ASGI application to add to pgnotify's:
`URLRouter(pgnotify.routing.websocket_urlpatterns + pgnotify.contrib.chat.routing.websocket_urlpatterns)`."""

from django.urls import re_path

from .consumer import ChatConsumer

websocket_urlpatterns = [
    # Any room name reaches the consumer, which refuses bad ones at the handshake (not a 500).
    # channels routes ASGI applications with Django's re_path(); django-stubs types its views as Django views only.
    re_path(r"^ws/chat/(?P<room>[^/]*)(?P<rest>.*)$", ChatConsumer.as_asgi()),  # type: ignore[arg-type]
]
