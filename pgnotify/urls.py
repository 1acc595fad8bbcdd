"""pgnotify's pages, for the project's URLconf: `path("", include("pgnotify.urls"))`.

The dashboard (`pgnotify:dashboard`), and the chat (`pgnotify:chat`) when pgnotify.contrib.chat
is installed.
"""

from django.apps import apps

from .web.urls import urlpatterns as _web

app_name = "pgnotify"

urlpatterns = list(_web)
if apps.is_installed("pgnotify.contrib.chat"):
    from .contrib.chat.urls import urlpatterns as _chat

    urlpatterns += _chat
