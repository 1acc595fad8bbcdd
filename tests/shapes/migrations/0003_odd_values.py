from django.db import migrations, models

# The tables of the unmanaged OddValue and Wide (1,600 columns: the key and c1 .. c1599).
TABLES = f"""
CREATE TABLE shapes_oddvalue (id bigserial PRIMARY KEY, doc json, docb jsonb, body text, num numeric,
    flt double precision);
CREATE TABLE shapes_wide (id bigserial PRIMARY KEY, {", ".join(f"c{n} integer" for n in range(1, 1600))});
"""


class Migration(migrations.Migration):

    dependencies = [
        ('shapes', '0002_sample'),
    ]

    operations = [
        migrations.RunSQL(TABLES, reverse_sql="DROP TABLE shapes_oddvalue, shapes_wide"),
        migrations.CreateModel(
            name='OddValue',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('doc', models.TextField(null=True)),
                ('docb', models.JSONField(null=True)),
                ('body', models.TextField(null=True)),
                ('num', models.DecimalField(decimal_places=10, max_digits=40, null=True)),
                ('flt', models.FloatField(null=True)),
            ],
            options={'db_table': 'shapes_oddvalue', 'managed': False},
        ),
        migrations.CreateModel(
            name='Wide',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
            ],
            options={'db_table': 'shapes_wide', 'managed': False},
        ),
    ]
