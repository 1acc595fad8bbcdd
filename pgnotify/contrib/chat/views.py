from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def chat(request, room):
    return render(request, "pgnotify_chat/chat.html", {"room": room})
