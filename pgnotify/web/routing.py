"""Websocket routes of the web side: the dashboard (the admin's live notices use it too) and the
live streams of the app's users."""

from django.urls import path

from .consumers import DashboardConsumer
from .live.consumer import LiveConsumer

websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    path("ws/live/", LiveConsumer.as_asgi()),
]
