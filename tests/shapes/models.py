"""One model per shape of table (docs/models.md). The partitioned table, the view and the table
without a key are created by the migration; their models are unmanaged."""

from django.db import models


class CompositeItem(models.Model):
    """A composite primary key: `pk` is {"tenant": ..., "code": ...}."""

    pk = models.CompositePrimaryKey("tenant", "code")
    tenant = models.IntegerField()
    code = models.CharField(max_length=20)
    val = models.IntegerField(default=0)


class SchemaItem(models.Model):
    """A table in a schema of its own, off the search path."""

    name = models.CharField(max_length=50)
    val = models.IntegerField(default=0)

    class Meta:
        db_table = 'shapes_other"."items'


class BaseItem(models.Model):
    """Watched with its proxy, each on its own channel."""

    name = models.CharField(max_length=50)
    val = models.IntegerField(default=0)
    secret = models.CharField(max_length=50, default="")


class ProxyItem(BaseItem):
    class Meta:
        proxy = True


class Reading(models.Model):
    """A partitioned table: range partitions on id, one of them partitioned again."""

    id = models.BigIntegerField(primary_key=True)
    sensor = models.CharField(max_length=20)
    val = models.IntegerField(default=0)

    class Meta:
        managed = False
        db_table = "shapes_reading"


class Place(models.Model):
    """Multi-table inheritance: the parent..."""

    name = models.CharField(max_length=50)
    city = models.CharField(max_length=50, default="")


class Restaurant(Place):
    """...and the child, whose table holds only its own fields."""

    seats = models.IntegerField(default=0)


class Amount(models.Model):
    """Numbers a double cannot hold, and a duration."""

    amount = models.DecimalField(max_digits=40, decimal_places=2, default=0)
    data = models.JSONField(default=dict)
    duration = models.DurationField(null=True)


class ItemView(models.Model):
    """Refused: an unmanaged model over a view."""

    name = models.CharField(max_length=50)

    class Meta:
        managed = False
        db_table = "shapes_item_view"


class Unkeyed(models.Model):
    """Refused: an unmanaged model over a table with no primary key or unique index."""

    id = models.IntegerField(primary_key=True)
    note = models.TextField()

    class Meta:
        managed = False
        db_table = "shapes_unkeyed"


class Sample(models.Model):
    """A partitioned table keyed the way PostgreSQL requires: its primary key (id, ts) holds the
    partition column, the model's is `id`. Old and new rows are paired on the table's key; `pk` is `id`."""

    id = models.IntegerField(primary_key=True)
    ts = models.DateField()
    v = models.IntegerField(default=0)

    class Meta:
        managed = False
        db_table = "shapes_sample"


class OddValue(models.Model):
    """Values at the edges of what a change event can carry (tests/integration/test_odd_values.py): a `json`
    column (Django has no field for it), jsonb, text, numeric and a double."""

    doc = models.TextField(null=True)  # noqa: DJ001 (json in the table, where NULL is the default)
    docb = models.JSONField(null=True)
    body = models.TextField(null=True)  # noqa: DJ001 (the table's column is nullable)
    num = models.DecimalField(max_digits=40, decimal_places=10, null=True)
    flt = models.FloatField(null=True)

    class Meta:
        managed = False
        db_table = "shapes_oddvalue"


class Wide(models.Model):
    """A table of 1,600 columns, PostgreSQL's most; the model names only its key."""

    id = models.BigAutoField(primary_key=True)

    class Meta:
        managed = False
        db_table = "shapes_wide"
