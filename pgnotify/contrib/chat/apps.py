from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "pgnotify.contrib.chat"
    label = "pgnotify_chat"
    verbose_name = "pgnotify chat"
    default_auto_field = "django.db.models.BigAutoField"

    # Read by pgnotify.conf: chat rows travel as change events on channel `chat`, and the
    # listener's ChatRoomSender hands each new message to its room's group.
    pgnotify_watch = {"pgnotify_chat.ChatMessage": {"channel": "chat"}}
    pgnotify_handlers = ["pgnotify.contrib.chat.handler.ChatRoomSender"]

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
