"""A minimal Django project for django-pgpubsub, run from bench/.venv-peers (not pgnotify's venv)."""

import os
from urllib.parse import unquote, urlsplit

_url = urlsplit(os.environ["DATABASE_URL"])
# The embedded server's host is its socket directory, percent-encoded (urlsplit's hostname lowercases).
_host_port = _url.netloc.rpartition("@")[2]
_host = unquote(_host_port.rsplit(":", 1)[0] if _url.port else _host_port) or "127.0.0.1"
SECRET_KEY = "pgpubsub-peer-bench"
INSTALLED_APPS = ["django.contrib.contenttypes", "pgtrigger", "pgpubsub", "bench.pgpubsub_peer"]
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": _url.path.lstrip("/"),
                         "USER": _url.username or "postgres", "PASSWORD": _url.password or "",
                         "HOST": _host, "PORT": _url.port or 5432}}
PGTRIGGER_INSTALL_ON_MIGRATE = True  # the app has no migrations: tables by --run-syncdb
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
