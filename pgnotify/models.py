from django.conf import settings
from django.db import models
from django.db.models.functions import Now


class Xid8Field(models.BigIntegerField):
    """PostgreSQL's 64-bit transaction id, comparable with pg_snapshot functions."""

    def db_type(self, connection):
        return "xid8"


class Event(models.Model):
    """The durable event log: one row per change event, written by the trigger in the
    same transaction as the change, so a listener can replay what it missed."""

    id = models.BigAutoField(primary_key=True)
    channel = models.TextField()
    txid = Xid8Field(db_default=models.Func(function="pg_current_xact_id"), db_index=True)
    created_at = models.DateTimeField(db_default=Now())
    payload = models.JSONField()

    class Meta:
        db_table = "pgnotify_event"

    def __str__(self):
        return f"#{self.id} on {self.channel}"


class ListenerPosition(models.Model):
    """How far the listeners of one name have handed events on: a transaction snapshot,
    meaning every event whose transaction is visible in it has been handed on."""

    name = models.CharField(max_length=200, primary_key=True)
    snapshot = models.TextField()
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "pgnotify_listener"

    def __str__(self):
        return self.name


class ChatMessage(models.Model):
    room = models.CharField(max_length=50)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150)
    message = models.TextField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [models.Index(fields=["room", "-id"], name="pgnotify_chat_room_id")]

    def __str__(self):
        return f"{self.username} in {self.room}: {self.message[:40]}"


class ChatPresence(models.Model):
    """One open chat websocket, on any web process; refreshed by a heartbeat so that a
    connection whose process died ages out (see pgnotify.presence)."""

    channel_name = models.CharField(max_length=200, primary_key=True)
    room = models.CharField(max_length=50)
    username = models.CharField(max_length=150)
    seen_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [models.Index(fields=["room", "seen_at"], name="pgnotify_presence_room")]

    def __str__(self):
        return f"{self.username} in {self.room}"
