from django.shortcuts import render

from pgnotify.web.login import send_to_login


def chat(request, room):
    if not request.user.is_authenticated:
        return send_to_login(request)
    return render(request, "pgnotify_chat/chat.html", {"room": room})
