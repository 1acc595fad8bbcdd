from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PgNotifyConfig(AppConfig):
    name = "pgnotify"
    verbose_name = "PostgreSQL notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .triggers import sync_triggers_after_migrate

        post_migrate.connect(sync_triggers_after_migrate, sender=self)
