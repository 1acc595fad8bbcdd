from django.apps import AppConfig


class ShapesConfig(AppConfig):
    """Test-only models of every shape a watched model can have (docs/models.md)."""

    name = "tests.shapes"
    label = "shapes"
    default_auto_field = "django.db.models.BigAutoField"
