"""The SQL of migrations 0001 to 0007 as they were released, read only by those migrations: a
database that has some of them applied (made by an older release) finishes that history before
0008 moves its triggers to the current change function (pgnotify/schema/sql/) and drops these."""

from importlib.resources import files


def load_sql(name: str) -> str:
    return files(__package__).joinpath(name).read_text()
