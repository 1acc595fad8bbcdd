"""Pages of the web side. The live data arrives over websockets; views only render the shell."""

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render


@staff_member_required(login_url=None)  # None: the project's LOGIN_URL, read per request
def dashboard(request):
    return render(request, "pgnotify/dashboard.html")
