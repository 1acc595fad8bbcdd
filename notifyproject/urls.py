from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

from notifyproject.shop.views import my_orders

urlpatterns = [
    path("", TemplateView.as_view(template_name="index.html"), name="index"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("my-orders/", my_orders, name="my-orders"),
    path("catalog/", include("notifyproject.shop.urls")),
    path("", include("pgnotify.urls")),
    path("", include("pgnotify.contrib.chat.urls")),
]
