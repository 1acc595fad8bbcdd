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
