from django.db import migrations, models

# A partitioned table's primary key must hold its partition column: (id, ts), where the model's is id.
TABLES = """
CREATE TABLE shapes_sample (id integer NOT NULL, ts date NOT NULL, v integer NOT NULL DEFAULT 0, PRIMARY KEY (id, ts))
    PARTITION BY RANGE (ts);
CREATE TABLE shapes_sample_2026_01 PARTITION OF shapes_sample FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE shapes_sample_2026_02 PARTITION OF shapes_sample FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
"""


class Migration(migrations.Migration):

    dependencies = [
        ("shapes", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(TABLES, reverse_sql="DROP TABLE shapes_sample"),
        migrations.CreateModel(
            name="Sample",
            fields=[
                ("id", models.IntegerField(primary_key=True, serialize=False)),
                ("ts", models.DateField()),
                ("v", models.IntegerField(default=0)),
            ],
            options={
                "db_table": "shapes_sample",
                "managed": False,
            },
        ),
    ]
