"""A minimal Django project for django-pgpubsub, run from bench/.venv-peers (not pgnotify's venv)."""

import os
from urllib.parse import urlsplit

_url = urlsplit(os.environ["DATABASE_URL"])
SECRET_KEY = "pgpubsub-peer-bench"
INSTALLED_APPS = ["django.contrib.contenttypes", "pgtrigger", "pgpubsub", "bench.pgpubsub_peer"]
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": _url.path.lstrip("/"),
                         "USER": _url.username or "postgres", "PASSWORD": _url.password or "",
                         "HOST": _url.hostname or "127.0.0.1", "PORT": _url.port or 5432}}
PGTRIGGER_INSTALL_ON_MIGRATE = True  # the app has no migrations: tables by --run-syncdb
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
