"""The websocket origin check: the page that opens a socket must come from this very site.

Browsers send cookies with a websocket handshake whatever page opened it, and cookies are not
scoped by port: a page of another application on the same host (`http://localhost:9999`) could
open an authenticated socket. channels' AllowedHostsOriginValidator compares the origin's host
with ALLOWED_HOSTS and ignores scheme and port. `OriginValidator` requires the origin's scheme,
host and port to be the request's own (its Host header, itself allowed by ALLOWED_HOSTS, and its
scheme, https when SECURE_PROXY_SSL_HEADER says so), or an origin listed in CSRF_TRUSTED_ORIGINS.

In the project's asgi.py:
    OriginValidator(AuthMiddlewareStack(URLRouter(pgnotify.routing.websocket_urlpatterns)))
"""

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginValidator:
    """ASGI middleware: a websocket whose Origin is not the request's own site is refused (HTTP 403)."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not same_origin(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def same_origin(scope) -> bool:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
    origin, host = headers.get("origin"), headers.get("host")
    if not origin or not host or origin == "null":
        return False
    if origin.rstrip("/") in {trusted.rstrip("/") for trusted in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return False
    scheme = _request_scheme(scope, headers)
    return _site(origin) == _site(f"{scheme}://{host}")


def _site(url: str) -> tuple | None:
    """(scheme, host, port) of a URL, the port filled in from the scheme; None when malformed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def _request_scheme(scope, headers: dict) -> str:
    if scope.get("scheme") in ("wss", "https"):
        return "https"
    proxy = settings.SECURE_PROXY_SSL_HEADER  # as Django's HttpRequest.scheme reads it
    if proxy:
        header, secure_value = proxy
        name = header.removeprefix("HTTP_").replace("_", "-").lower()
        if headers.get(name, "").split(",")[0].strip() == secure_value:
            return "https"
    return "http"


def _allowed_hosts() -> list[str]:
    # As HttpRequest.get_host: with DEBUG and no ALLOWED_HOSTS, the local names.
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return settings.ALLOWED_HOSTS
