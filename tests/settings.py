"""The test settings: the demo project's, plus a test-only app with one model of every shape a
watched model can have (tests/shapes), watched on channels of their own."""

from notifyproject.settings import *  # noqa: F403
from notifyproject.settings import INSTALLED_APPS, PGNOTIFY

INSTALLED_APPS = [*INSTALLED_APPS, "tests.shapes"]

SHAPES_WATCH = {
    "shapes.CompositeItem": {"channel": "shapes_composite"},
    "shapes.SchemaItem": {"channel": "shapes_schema"},
    "shapes.BaseItem": {"channel": "shapes_base"},
    "shapes.ProxyItem": {"channel": "shapes_proxy", "exclude": ["secret"]},
    "shapes.Reading": {"channel": "shapes_reading"},
    "shapes.Place": {"channel": "shapes_place"},
    "shapes.Restaurant": {"channel": "shapes_restaurant"},
    "shapes.Amount": {"channel": "shapes_amount"},
    "shapes.Sample": {"channel": "shapes_sample"},
}
# Tables of odd values (tests/integration/test_odd_values.py), apart from the shapes every parity test compares.
ODD_WATCH = {
    "shapes.OddValue": {"channel": "shapes_odd"},
    "shapes.Wide": {"channel": "shapes_wide"},
}
PGNOTIFY = {
    **PGNOTIFY,
    "WATCH": {**PGNOTIFY["WATCH"], **SHAPES_WATCH, **ODD_WATCH},
    "CACHE_INVALIDATE": {**PGNOTIFY["CACHE_INVALIDATE"], "shapes.Reading": ["readings"]},
}
