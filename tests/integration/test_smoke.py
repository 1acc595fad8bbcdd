import pytest
from django.db import connection


@pytest.mark.django_db(transaction=True)
def test_insert_reaches_listener(listener):
    process = listener()
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO shop_order DEFAULT VALUES RETURNING id")
        (order_id,) = cursor.fetchone()
    line = process.wait_for(lambda _: [j for j in process.json_lines() if j["channel"] == "orders"])
    event = line[0]["payload"]
    assert event["op"] == "INSERT" and event["pk"] == order_id and event["table"] == "shop_order"
