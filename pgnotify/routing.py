"""Websocket routes of the pgnotify app, mounted by the project's ASGI application."""

from django.urls import path

from .dashboard import DashboardConsumer

websocket_urlpatterns = [
    path("ws/dashboard/", DashboardConsumer.as_asgi()),
    # chat routes
]
