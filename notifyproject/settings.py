"""Settings of the demo project. Everything that differs per machine comes from the environment."""

import os
from pathlib import Path

import dj_database_url

from notifyproject import embedded_db, secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "")
    return value.strip().lower() in {"1", "true", "yes", "on"} if value.strip() else default


def _list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Safe defaults (docs/security.md): DEBUG only when asked (`make run` asks), a key nobody else knows.
DEBUG = _flag("DEBUG")
SECRET_KEY = secret_key.load(BASE_DIR)
ALLOWED_HOSTS = _list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _list("CSRF_TRUSTED_ORIGINS")  # also trusted as websocket origins

# Production switches, all off by default so that a local login over plain HTTP works. HTTPS=1
# turns on the secure cookies, the redirect to https and a year of HSTS; each can be set alone.
HTTPS = _flag("HTTPS")
SESSION_COOKIE_SECURE = _flag("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = _flag("CSRF_COOKIE_SECURE", HTTPS)
SECURE_SSL_REDIRECT = _flag("SECURE_SSL_REDIRECT", HTTPS)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS") or (365 * 24 * 3600 if HTTPS else 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _flag("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = _flag("SECURE_HSTS_PRELOAD")
# Behind a TLS-terminating proxy: "HTTP_X_FORWARDED_PROTO,https" (only if the proxy sets that header).
SECURE_PROXY_SSL_HEADER = tuple(_list("SECURE_PROXY_SSL_HEADER")) or None

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "channels_postgres",
    "pgnotify",
    "pgnotify.contrib.chat",
    "notifyproject.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "notifyproject.urls"
ASGI_APPLICATION = "notifyproject.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# DATABASE_URL, else this checkout's embedded PostgreSQL, whose address is only read here: manage.py
# starts it (notifyproject/embedded_db.py), so loading the settings reaches no server.
DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL") or embedded_db.url())}
# Web processes share a psycopg pool; listeners open their own dedicated connection.
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": 10}
# A server that vanishes (a dead network, no FIN) frees a thread waiting on it within ~30 s instead
# of never; a server that does not answer a connection attempt, within 5 s.
for _option, _value in {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                        "keepalives_count": 3, "tcp_user_timeout": 30_000}.items():
    DATABASES["default"]["OPTIONS"].setdefault(_option, _value)

# DATABASE_URL may go through a transaction-pooling PgBouncer when DIRECT_DATABASE_URL reaches the
# same database directly: the listener's sessions use it (PGNOTIFY["DIRECT"], docs/operations.md).
DIRECT_DATABASE_URL = os.environ.get("DIRECT_DATABASE_URL", "")
if DIRECT_DATABASE_URL:
    DATABASES["direct"] = {**dj_database_url.parse(DIRECT_DATABASE_URL), "TEST": {"MIRROR": "default"}}

REDIS_URL = os.environ.get("REDIS_URL", "")


def redis_channel_layer(url: str, prefix: str) -> dict:
    # redis-py's default socket timeout (5 s) is as long as channels_redis's blocking receive (5 s):
    # a consumer with nothing to receive for that long would fail. The timeout outlasts the receive.
    # Every layer call in flight holds a pooled connection, and redis-py 7+ caps the pool at 100, past
    # which calls fail (e.g. the group_discard of 500 websockets closing at once).
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": url, "socket_timeout": 15, "max_connections": 1000}], "prefix": prefix,
                   # messages a channel holds before the layer drops more (tests make it tiny)
                   "capacity": int(os.environ.get("CHANNEL_LAYER_CAPACITY", "100")),
                   # each web process's fan-out channel holds 10,000 unless told otherwise (tests)
                   "channel_capacity": ({"pgnotify.fanout.*": int(os.environ["CHANNEL_LAYER_FANOUT_CAPACITY"])}
                                        if os.environ.get("CHANNEL_LAYER_FANOUT_CAPACITY") else {})},
    }


if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL, os.environ.get("CHANNEL_LAYER_PREFIX", "asgi"))}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {
        "default": {
            # channels_postgres, made to survive lost connections; it uses the default database.
            "BACKEND": "pgnotify.channel_layer.PostgresChannelLayer",
            "CONFIG": {"prefix": os.environ.get("CHANNEL_LAYER_PREFIX", "asgi"),
                       # Seconds a crashed process's group memberships outlive it.
                       "group_expiry": int(os.environ.get("CHANNEL_LAYER_GROUP_EXPIRY", "120"))},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "django_cache"}}
# Several projects (or test runs) can share one Redis: each keeps its keys under its own prefix.
CACHES["default"]["KEY_PREFIX"] = os.environ.get("CACHE_KEY_PREFIX", "")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# WhiteNoise serves the apps' static files under daphne without a collectstatic step: straight
# from the apps' folders until `collectstatic` has filled STATIC_ROOT.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG or not STATIC_ROOT.is_dir()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

PGNOTIFY = {
    "WATCH": {
        "shop.Order": {"channel": "orders"},
        "shop.Product": {"channel": "products"},
        "auth.User": {"channel": "users", "exclude": ["password"]},
    },
    "CACHE_INVALIDATE": {"auth.User": ["users"], "shop.Product": ["catalog"]},
    "LISTEN": ["system", "chat"],
    # "notify" (triggers) or "wal" (logical decoding): docs/sources.md.
    "SOURCE": os.environ.get("PGNOTIFY_SOURCE", "notify"),
    "DIRECT": {"default": "direct"} if DIRECT_DATABASE_URL else {},
    # Live data for the app's users (docs/live.md): each customer's own orders, at /ws/live/.
    "STREAMS": {
        "my-orders": {
            "model": "shop.Order",
            "fields": ["id", "number", "status", "quantity", "total", "created_at"],
            "filters": {"status": ["eq", "in"]},
            "rows": "notifyproject.shop.streams.my_orders",
        },
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"pgnotify": {"handlers": ["stderr"], "level": os.environ.get("PGNOTIFY_LOG_LEVEL", "INFO")}},
}
