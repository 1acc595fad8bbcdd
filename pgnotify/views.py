"""Pages of the pgnotify app. The live data arrives over websockets; views only render the shell."""

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@staff_member_required(login_url="/accounts/login/")
def dashboard(request):
    return render(request, "pgnotify/dashboard.html")


# chat views
@login_required
def chat(request, room):
    return render(request, "pgnotify/chat.html", {"room": room})
