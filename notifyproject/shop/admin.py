from django.contrib import admin

from .models import Order, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "sku", "price", "stock", "updated_at"]
    search_fields = ["name", "sku"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["number", "customer", "product", "quantity", "status", "total", "created_at"]
    list_filter = ["status"]
    search_fields = ["number"]
