from django.conf import settings
from django.db import models
from django.db.models.functions import Now


class ChatMessage(models.Model):
    room = models.CharField(max_length=50)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150)
    message = models.TextField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "pgnotify_chatmessage"  # created by pgnotify's migration 0001, before the chat was an app
        indexes = [models.Index(fields=["room", "-id"], name="pgnotify_chat_room_id")]

    def __str__(self):
        return f"{self.username} in {self.room}: {self.message[:40]}"


class ChatPresence(models.Model):
    """One open chat websocket, on any web process; refreshed by a heartbeat so that a
    connection whose process died ages out (see pgnotify.contrib.chat.presence)."""

    channel_name = models.CharField(max_length=200, primary_key=True)
    room = models.CharField(max_length=50)
    username = models.CharField(max_length=150)
    seen_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "pgnotify_chatpresence"
        indexes = [models.Index(fields=["room", "seen_at"], name="pgnotify_presence_room")]

    def __str__(self):
        return f"{self.username} in {self.room}"
