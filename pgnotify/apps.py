from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PgNotifyConfig(AppConfig):
    name = "pgnotify"
    verbose_name = "PostgreSQL notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .cache import create_cache_table_after_migrate
        from .switch import sync_source_after_migrate

        # Triggers and publication in one receiver: their order makes a switch of source lossless.
        post_migrate.connect(sync_source_after_migrate, sender=self)
        post_migrate.connect(create_cache_table_after_migrate, sender=self)
