import django.db.models.deletion
from django.db import migrations, models

# What the unmanaged models stand on, and the schema of SchemaItem's table.
TABLES = """
CREATE SCHEMA shapes_other;
CREATE TABLE shapes_reading (id bigint PRIMARY KEY, sensor varchar(20) NOT NULL, val integer NOT NULL DEFAULT 0)
    PARTITION BY RANGE (id);
CREATE TABLE shapes_reading_low PARTITION OF shapes_reading FOR VALUES FROM (MINVALUE) TO (1000);
CREATE TABLE shapes_reading_high PARTITION OF shapes_reading FOR VALUES FROM (1000) TO (2000)
    PARTITION BY RANGE (id);
CREATE TABLE shapes_reading_high_a PARTITION OF shapes_reading_high FOR VALUES FROM (1000) TO (1500);
CREATE TABLE shapes_reading_high_b PARTITION OF shapes_reading_high FOR VALUES FROM (1500) TO (2000);
CREATE TABLE shapes_unkeyed (id integer NOT NULL, note text NOT NULL);
"""
VIEW = "CREATE VIEW shapes_item_view AS SELECT id, name FROM shapes_baseitem"


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.RunSQL(TABLES, reverse_sql="DROP TABLE shapes_reading, shapes_unkeyed; DROP SCHEMA shapes_other"),
        migrations.CreateModel(
            name='ItemView',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=50)),
            ],
            options={
                'db_table': 'shapes_item_view',
                'managed': False,
            },
        ),
        migrations.CreateModel(
            name='Reading',
            fields=[
                ('id', models.BigIntegerField(primary_key=True, serialize=False)),
                ('sensor', models.CharField(max_length=20)),
                ('val', models.IntegerField(default=0)),
            ],
            options={
                'db_table': 'shapes_reading',
                'managed': False,
            },
        ),
        migrations.CreateModel(
            name='Unkeyed',
            fields=[
                ('id', models.IntegerField(primary_key=True, serialize=False)),
                ('note', models.TextField()),
            ],
            options={
                'db_table': 'shapes_unkeyed',
                'managed': False,
            },
        ),
        migrations.CreateModel(
            name='Amount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('amount', models.DecimalField(decimal_places=2, default=0, max_digits=40)),
                ('data', models.JSONField(default=dict)),
                ('duration', models.DurationField(null=True)),
            ],
        ),
        migrations.CreateModel(
            name='BaseItem',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=50)),
                ('val', models.IntegerField(default=0)),
                ('secret', models.CharField(default='', max_length=50)),
            ],
        ),
        migrations.CreateModel(
            name='CompositeItem',
            fields=[
                ('pk', models.CompositePrimaryKey('tenant', 'code', blank=True, editable=False, primary_key=True, serialize=False)),
                ('tenant', models.IntegerField()),
                ('code', models.CharField(max_length=20)),
                ('val', models.IntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name='Place',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=50)),
                ('city', models.CharField(default='', max_length=50)),
            ],
        ),
        migrations.CreateModel(
            name='SchemaItem',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=50)),
                ('val', models.IntegerField(default=0)),
            ],
            options={
                'db_table': 'shapes_other"."items',
            },
        ),
        migrations.CreateModel(
            name='ProxyItem',
            fields=[
            ],
            options={
                'proxy': True,
                'indexes': [],
                'constraints': [],
            },
            bases=('shapes.baseitem',),
        ),
        migrations.CreateModel(
            name='Restaurant',
            fields=[
                ('place_ptr', models.OneToOneField(auto_created=True, on_delete=django.db.models.deletion.CASCADE, parent_link=True, primary_key=True, serialize=False, to='shapes.place')),
                ('seats', models.IntegerField(default=0)),
            ],
            bases=('shapes.place',),
        ),
        migrations.RunSQL(VIEW, reverse_sql="DROP VIEW shapes_item_view"),
    ]
