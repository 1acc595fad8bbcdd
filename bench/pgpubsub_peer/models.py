from django.db import models


class PeerOrder(models.Model):
    status = models.CharField(max_length=16, default="new")
    quantity = models.IntegerField(default=1)
    total = models.DecimalField(max_digits=10, decimal_places=2, default=0)

    def __str__(self):
        return f"order {self.pk}"
