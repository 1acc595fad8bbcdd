from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PgNotifyConfig(AppConfig):
    name = "pgnotify"
    verbose_name = "PostgreSQL notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .cache import create_cache_table_after_migrate
        from .schema.install import sync_after_migrate

        post_migrate.connect(sync_after_migrate, sender=self)
        post_migrate.connect(create_cache_table_after_migrate, sender=self)
