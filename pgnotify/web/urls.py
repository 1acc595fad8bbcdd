"""HTTP pages of the web side: the dashboard."""

from django.urls import path

from . import views

app_name = "pgnotify"

urlpatterns = [
    path("dashboard/", views.dashboard, name="dashboard"),
]
