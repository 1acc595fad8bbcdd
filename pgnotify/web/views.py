"""Pages of the web side. The live data arrives over websockets; views only render the shell."""

from django.shortcuts import render

from .login import send_to_login


def dashboard(request):
    if not (request.user.is_active and request.user.is_staff):
        return send_to_login(request)
    return render(request, "pgnotify/dashboard.html")
