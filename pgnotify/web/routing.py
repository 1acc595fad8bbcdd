"""Websocket routes of the web side: the dashboard (the admin's live notices use it too) and the
live streams of the app's users."""

from django.urls import path

from .consumers import DashboardConsumer
from .live.consumer import LiveConsumer

# channels routes ASGI applications with Django's path(); django-stubs types its views as Django views only.
websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/live/", LiveConsumer.as_asgi()),  # type: ignore[arg-type]
]
