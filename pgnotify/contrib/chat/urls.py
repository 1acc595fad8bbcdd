"""Pages of the chat: `/chat/<room>/`."""

from django.urls import re_path

from . import views
from .rules import ROOM_PATTERN

urlpatterns = [
    re_path(rf"^chat/(?P<room>{ROOM_PATTERN})/$", views.chat, name="chat"),
]
