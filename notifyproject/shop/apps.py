from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "notifyproject.shop"
    label = "shop"
    verbose_name = "Shop (demo)"
