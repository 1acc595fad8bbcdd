"""System checks of the chat: an installed chat whose pages the project does not route is a
warning, not a 404 found later."""

from django.core.checks import Tags, Warning, register
from django.urls import NoReverseMatch, reverse


@register(Tags.urls)
def check_pages_routed(app_configs=None, **kwargs) -> list:
    try:
        reverse("pgnotify_chat:chat", args=["lobby"])
    except NoReverseMatch:
        return [Warning(
            "pgnotify.contrib.chat is installed but its pages are not in the URLconf",
            hint='Add path("", include("pgnotify.contrib.chat.urls")) to urls.py, and '
                 "pgnotify.contrib.chat.routing.websocket_urlpatterns to the websocket router of asgi.py.",
            id="pgnotify_chat.W001",
        )]
    return []
