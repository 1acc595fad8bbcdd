"""HTTP pages of the pgnotify app: the dashboard (and the chat)."""

from django.urls import path, re_path

from . import views
from .chat import ROOM_PATTERN

app_name = "pgnotify"

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    # chat routes
    re_path(rf"^chat/(?P<room>{ROOM_PATTERN})/$", views.chat, name="chat"),
]
