"""The functions pgnotify installs, one .sql file each, as they are now (pgnotify.schema.functions)."""

from importlib.resources import files


def load_sql(name: str) -> str:
    return files(__package__).joinpath(name).read_text()
