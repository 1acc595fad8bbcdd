"""pgnotify's pages, for the project's URLconf: `path("", include("pgnotify.urls"))`: the dashboard
(`pgnotify:dashboard`) and the live streams as Server-Sent Events (`pgnotify:live`).

A contrib app brings its own pages, for the project to include: the chat's are
`include("pgnotify.contrib.chat.urls")`.
"""

from .web.urls import app_name, urlpatterns

__all__ = ["app_name", "urlpatterns"]
