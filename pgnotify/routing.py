"""Websocket routes of the pgnotify app, mounted by the project's ASGI application."""

from django.urls import path, re_path

from .consumers_chat import ChatConsumer
from .dashboard import DashboardConsumer

websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    # chat routes
    # Any room name reaches the consumer, which refuses bad ones at the handshake (not a 500).
    re_path(r"^ws/chat/(?P<room>[^/]*)(?P<rest>.*)$", ChatConsumer.as_asgi()),
]
