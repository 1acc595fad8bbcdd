"""HTTP pages of the web side: the dashboard, and the live streams as Server-Sent Events."""

from django.urls import path

from . import views
from .live.sse import stream_view

app_name = "pgnotify"

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    path("live/<str:stream>/", stream_view, name="live"),
]
