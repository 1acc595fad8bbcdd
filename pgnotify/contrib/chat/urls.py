"""Pages of the chat, for the project's URLconf: `path("", include("pgnotify.contrib.chat.urls"))`
gives `/chat/<room>/` (`pgnotify_chat:chat`)."""

from django.urls import re_path

from . import views
from .rules import ROOM_PATTERN

app_name = "pgnotify_chat"

urlpatterns = [
    re_path(rf"^chat/(?P<room>{ROOM_PATTERN})/$", views.chat, name="chat"),
]
