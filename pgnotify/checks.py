"""System checks: misconfiguration is reported by `manage.py check`, never by a traceback."""

from django.apps import apps
from django.core.checks import Error, register
from django.core.exceptions import FieldDoesNotExist
from django.db import connections

from . import conf
from .sending import _CHANNEL

HINT_WATCH = 'e.g. PGNOTIFY = {"WATCH": {"shop.Order": {"channel": "orders", "exclude": ["note"]}}}'


def _model(label):
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


def _field_names(model) -> str:
    return ", ".join(f.name for f in model._meta.concrete_fields)


@register()
def check_database(app_configs=None, **kwargs):
    if connections["default"].vendor != "postgresql":
        return [Error("pgnotify needs PostgreSQL as the default database.",
                      hint="Set DATABASE_URL to a postgresql:// URL.", id="pgnotify.E001")]
    return []


@register()
def check_watch(app_configs=None, **kwargs):
    watch = conf.get("WATCH")
    if not isinstance(watch, dict):
        return [Error("PGNOTIFY['WATCH'] must be a dict of model label -> options.", hint=HINT_WATCH,
                      id="pgnotify.E002")]
    errors = []
    for label, options in watch.items():
        model = _model(label)
        if model is None:
            errors.append(Error(f"PGNOTIFY['WATCH'] names unknown model {label!r}.",
                                hint="Use 'app_label.ModelName' of an installed app.", id="pgnotify.E003"))
            continue
        if not isinstance(options, dict) or not _CHANNEL.fullmatch(str(options.get("channel", ""))):
            errors.append(Error(f"PGNOTIFY['WATCH'][{label!r}] needs a valid 'channel' name.",
                                hint="1 to 63 letters, digits, '_', '-', '.' or ':'.", id="pgnotify.E004"))
            continue
        unknown = set(options) - {"channel", "exclude"}
        if unknown:
            errors.append(Error(f"PGNOTIFY['WATCH'][{label!r}] has unknown options {sorted(unknown)}.",
                                hint="Only 'channel' and 'exclude' are known.", id="pgnotify.E004"))
        exclude = options.get("exclude", [])
        if not isinstance(exclude, list | tuple) or not all(isinstance(name, str) for name in exclude):
            errors.append(Error(f"PGNOTIFY['WATCH'][{label!r}]['exclude'] must be a list of field names.",
                                id="pgnotify.E005"))
            continue
        for name in exclude:
            try:
                model._meta.get_field(name)
            except FieldDoesNotExist:
                errors.append(Error(f"PGNOTIFY['WATCH'][{label!r}] excludes unknown field {name!r}.",
                                    hint=f"Fields of {label}: {_field_names(model)}.",
                                    id="pgnotify.E005"))
    return errors


@register()
def check_cache_invalidate(app_configs=None, **kwargs):
    mapping = conf.get("CACHE_INVALIDATE")
    if not isinstance(mapping, dict):
        return [Error("PGNOTIFY['CACHE_INVALIDATE'] must be a dict of model label -> list of tags.",
                      id="pgnotify.E006")]
    errors = []
    for label, tags in mapping.items():
        if _model(label) is None:
            errors.append(Error(f"PGNOTIFY['CACHE_INVALIDATE'] names unknown model {label!r}.",
                                id="pgnotify.E006"))
        elif not isinstance(tags, list | tuple) or not tags or not all(isinstance(t, str) and t for t in tags):
            errors.append(Error(f"PGNOTIFY['CACHE_INVALIDATE'][{label!r}] must be a non-empty list of tags.",
                                id="pgnotify.E006"))
    return errors


@register()
def check_listen(app_configs=None, **kwargs):
    bad = [c for c in conf.get("LISTEN") if not isinstance(c, str) or not _CHANNEL.fullmatch(c)]
    if bad:
        return [Error(f"PGNOTIFY['LISTEN'] has invalid channel names {bad!r}.", id="pgnotify.E007")]
    return []
