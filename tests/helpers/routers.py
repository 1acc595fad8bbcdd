"""Database routers of the tests of routed models, named in DATABASE_ROUTERS by their dotted path."""


class StrictRouter:
    """shop.Order lives on 'analytics' only."""

    def db_for_write(self, model, **hints):
        return "analytics" if model._meta.label == "shop.Order" else None

    db_for_read = db_for_write

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label == "shop" and model_name == "order":
            return db == "analytics"
        return None


class WritesOnlyRouter:
    """shop.Order is written to 'analytics'; migrations go everywhere (the router says None)."""

    def db_for_write(self, model, **hints):
        return "analytics" if model._meta.label == "shop.Order" else None


class MigrateOnlyRouter:
    """shop.Order's table is made only on 'analytics'; writes are not routed."""

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "analytics" if model_name == "order" else None


class NoPgnotifyRouter:
    """shop.Order is on 'analytics', but pgnotify's own tables are kept off it."""

    def db_for_write(self, model, **hints):
        return "analytics" if model._meta.label == "shop.Order" else None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "default" if app_label == "pgnotify" else None
