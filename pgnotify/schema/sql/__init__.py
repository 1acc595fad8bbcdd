"""Trigger functions as versioned .sql files; a changed function is a new file and a new migration."""

from importlib.resources import files


def load_sql(name: str) -> str:
    return files(__package__).joinpath(name).read_text()
