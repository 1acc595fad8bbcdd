"""HTTP pages of the pgnotify app: the dashboard (and the chat)."""

from django.urls import path

from . import views

app_name = "pgnotify"

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
    # chat routes
]
