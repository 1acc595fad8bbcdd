"""`{% load pgnotify %}`: the log-in and log-out URLs of pgnotify's pages, whatever the project serves."""

from django import template

from ..web import login

register = template.Library()


@register.simple_tag
def login_url() -> str:
    return login.login_url()


@register.simple_tag
def logout_url() -> str | None:
    return login.logout_url()
