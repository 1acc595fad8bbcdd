"""Where pgnotify's pages send a user to log in and out, in any project.

A project made by `startproject` has the admin but not Django's auth URLs, so the default
`LOGIN_URL` (/accounts/login/) answers 404 there and the URL names `login` and `logout` do not
exist. Such a project gets the admin's pages; a project that set `LOGIN_URL` gets its own.
Read per request: settings may change (tests), URLconfs load late.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch, Resolver404, resolve, reverse


def login_url() -> str:
    url = resolve_url(settings.LOGIN_URL)
    # LazySettings has is_overridden; the django-stubs plugin takes it for a setting.
    if settings.is_overridden("LOGIN_URL") or _served(url):  # type: ignore[misc]
        return url
    return _reverse("admin:login") or url


def logout_url() -> str | None:
    """The URL to POST to for logging out, or None when the project has none."""
    return _reverse("logout") or _reverse("admin:logout")


def send_to_login(request):
    """The redirect to the log-in page that brings the user back here."""
    return redirect_to_login(request.get_full_path(), login_url())


def _served(url: str) -> bool:
    parts = urlsplit(url)
    if parts.netloc:  # another site's page: trust it
        return True
    try:
        resolve(parts.path)
    except Resolver404:
        return False
    return True


def _reverse(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None
