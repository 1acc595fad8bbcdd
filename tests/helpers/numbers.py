"""Numbers a double cannot hold, and a change event carrying them (the exact-number tests)."""

NUMERIC = "12345678901234567890123456789.12"  # 31 digits: a double keeps 17
BIG = 2**65 + 1  # 36893488147419103233: beyond 64 bits
SHOWN = "123456789012345678901.25"  # short enough for the dashboard's chip, too long for a double
PAYLOAD = ('{"id": 7, "txid": 9, "op": "INSERT", "pk": 1, "row": {"amount": ' + NUMERIC
           + ', "data": {"big": ' + str(BIG) + ', "neg": -' + str(BIG) + ', "tenth": 0.10}}}')
