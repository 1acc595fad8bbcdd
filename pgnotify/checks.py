"""System checks: misconfiguration is reported by `manage.py check`, never by a traceback.

Every key of settings.PGNOTIFY is checked (types, ranges, importable handlers), and so is what
the project pairs pgnotify with: the cache alias and the channel layer.
"""

from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import FieldDoesNotExist
from django.db import DatabaseError as DjangoDatabaseError
from django.db import connections, router
from psycopg import Connection

from . import conf
from .connection import listener_conninfo
from .exceptions import one_line
from .extras import installed
from .handlers.entries import handler_error_line, handler_problem, handlers_problem, valid_channel
from .listener.probe import can_listen
from .listener.wal.slots import PUBLICATION
from .schema.tables import fetch_table_facts
from .schema.watched import (
    database_of,
    key_columns,
    model_or_none,
    refusal,
    served_databases,
    wal_refusal,
    watched_labels,
    watched_tables,
)

HINT_WATCH = 'e.g. PGNOTIFY = {"WATCH": {"shop.Order": {"channel": "orders", "exclude": ["note"]}}}'
HINT_STREAMS = "See docs/live.md: a stream names a watched model, its fields, filters and rows (a Q per user)."
HINT_CHANNEL = "1 to 63 letters, digits, '_', '-', '.' or ':'."
WATCH_OPTIONS = {"channel", "exclude", "replica_identity"}
REPLICA_IDENTITIES = ("full", "default")
# Channel-layer backends whose package comes with an extra of pgnotify.
LAYER_PACKAGES = {
    "channels_redis.": ("channels_redis", "redis"),
    "pgnotify.channel_layer.": ("channels_postgres", "postgres-layer"),
    "pgnotify.web.layers.postgres.": ("channels_postgres", "postgres-layer"),
    "channels_postgres.": ("channels_postgres", "postgres-layer"),
}


def _field_names(model) -> str:
    return ", ".join(f.name for f in model._meta.concrete_fields)


def _connect(alias: str) -> Connection:
    """A connection of the checks' own with a short timeout: Django's pool would wait 30 s for a
    server that is down."""
    return Connection.connect(autocommit=True, **{**listener_conninfo(alias), "connect_timeout": 3})


def _served(databases) -> list[str]:
    """Of the databases a command names (`check --database`, `migrate`, `listen_notify`), those
    with watched tables on PostgreSQL: the database checks run there, and nowhere without a name."""
    served = served_databases()
    return [alias for alias in databases or () if alias in served and alias in settings.DATABASES
            and connections[alias].vendor == "postgresql"]


@register()
def check_database(app_configs=None, **kwargs):
    if connections["default"].vendor != "postgresql":
        return [Error("pgnotify needs PostgreSQL as the default database.",
                      hint="Use django.db.backends.postgresql (e.g. DATABASE_URL=postgresql://...).",
                      id="pgnotify.E001")]
    return []


@register()
def check_settings(app_configs=None, **kwargs):
    value = getattr(settings, "PGNOTIFY", {})
    if not isinstance(value, dict):
        return [Error("PGNOTIFY must be a dict.", hint=HINT_WATCH, id="pgnotify.E008")]
    unknown = sorted(set(value) - set(conf.DEFAULTS))
    if unknown:
        return [Error(f"PGNOTIFY has unknown keys {unknown}.", hint=f"Known keys: {', '.join(conf.DEFAULTS)}.",
                      id="pgnotify.E018")]
    return []


@register()
def check_watch(app_configs=None, **kwargs):
    watch = conf.get("WATCH")
    if not isinstance(watch, dict):
        return [Error("PGNOTIFY['WATCH'] must be a dict of model label -> options.", hint=HINT_WATCH,
                      id="pgnotify.E002")]
    errors = []
    for label, options in watch.items():
        model = model_or_none(label)
        if model is None:
            errors.append(Error(f"PGNOTIFY['WATCH'] names unknown model {label!r}.",
                                hint="Use 'app_label.ModelName' of an installed app.", id="pgnotify.E003"))
            continue
        if not isinstance(options, dict) or not valid_channel(options.get("channel")):
            errors.append(Error(f"PGNOTIFY['WATCH'][{label!r}] needs a valid 'channel' name.",
                                hint=HINT_CHANNEL, id="pgnotify.E004"))
            continue
        unknown = set(options) - WATCH_OPTIONS
        if unknown:
            errors.append(Error(f"PGNOTIFY['WATCH'][{label!r}] has unknown options {sorted(unknown)}.",
                                hint=f"Known options: {', '.join(sorted(WATCH_OPTIONS))}.", id="pgnotify.E014"))
        if options.get("replica_identity", "full") not in REPLICA_IDENTITIES:
            errors.append(Error(f"PGNOTIFY['WATCH'][{label!r}]['replica_identity'] must be 'full' or 'default', "
                                f"not {options['replica_identity']!r}.",
                                hint="'default' writes less WAL, but the WAL source's events then lack `changed` "
                                "(docs/sources.md).", id="pgnotify.E031"))
        exclude = options.get("exclude", [])
        if not isinstance(exclude, list | tuple) or not all(isinstance(name, str) for name in exclude):
            errors.append(Error(f"PGNOTIFY['WATCH'][{label!r}]['exclude'] must be a list of field names.",
                                id="pgnotify.E005"))
            continue
        for name in exclude:
            try:
                field = model._meta.get_field(name)
            except FieldDoesNotExist:
                errors.append(Error(f"PGNOTIFY['WATCH'][{label!r}] excludes unknown field {name!r}.",
                                    hint=f"Fields of {label}: {_field_names(model)}.",
                                    id="pgnotify.E015"))
                continue
            if getattr(field, "column", None) in key_columns(model):
                errors.append(Error(f"PGNOTIFY['WATCH'][{label!r}] excludes {name!r}, part of the primary key.",
                                    hint="Every event names its row by the primary key (`pk`): it cannot be excluded.",
                                    id="pgnotify.E022"))
        errors += _inheritance_warnings(label, model, watch)
    return errors


def _inheritance_warnings(label, model, watch) -> list:
    """A multi-table child's table holds only its own fields: its events carry no inherited field,
    and a save that changes only those updates the parent's table alone."""
    watched = {m for m in map(model_or_none, watch) if m is not None}
    parents = [parent for parent in model._meta.get_parent_list() if parent not in watched]
    if model._meta.proxy or not parents:
        return []
    names = ", ".join(parent._meta.label for parent in parents)
    return [Warning(f"PGNOTIFY['WATCH'][{label!r}] inherits fields from {names}, which is not watched: changes to "
                    "inherited fields send no event.",
                    hint=f"WATCH {names} too: its events carry the inherited fields, with the same pk.",
                    id="pgnotify.W021")]


@register()
def check_routing(app_configs=None, **kwargs):
    """A watched model is served where DATABASE_ROUTERS write it (`migrate --database ALIAS` and
    `listen_notify --database ALIAS`). What no listener can serve is an error: a database that is
    not PostgreSQL, a table the routers make elsewhere, a database without pgnotify's tables."""
    if not isinstance(conf.get("WATCH"), dict) or not isinstance(conf.get("CACHE_INVALIDATE"), dict):
        return []  # reported by the checks above
    errors = []
    for label in watched_labels():
        model = model_or_none(label)
        problem = model and _unservable(model)
        if problem:
            errors.append(Error(f"{label} {problem}: its changes would be lost.",
                                hint=f"Make the routers' db_for_write and allow_migrate agree on {label} (and allow "
                                     "app 'pgnotify' there), or stop watching it.", id="pgnotify.E026"))
    return errors


def _unservable(model) -> str | None:
    """Why no listener can serve the database the routers write the model to, or None."""
    database = database_of(model)
    if database not in settings.DATABASES or connections[database].vendor != "postgresql":
        return f"is written to database {database!r} (DATABASE_ROUTERS), which is not a PostgreSQL database"
    if not router.allow_migrate_model(database, model):
        made = [alias for alias in settings.DATABASES if router.allow_migrate_model(alias, model)]
        where = ", ".join(map(repr, made)) or "no database"
        return (f"is written to database {database!r} (db_for_write), but its table is made on {where} "
                "(allow_migrate): its triggers would not be where its writes go")
    if not all(router.allow_migrate_model(database, own) for own in apps.get_app_config("pgnotify").get_models()):
        return (f"is written to database {database!r}, where the routers do not migrate app 'pgnotify' "
                "(allow_migrate): it has no event log there")
    return None


# What the database refuses, by refusal reason: message id and hint.
_REFUSALS = {
    "kind": ("pgnotify.E020", "WATCH (or invalidate on) the models of the tables it reads from, or remove it."),
    "key": ("pgnotify.E021", "Give the table a primary key (or a unique index) on the model's primary key "
                             "columns or holding them (a table partitioned on ts: PRIMARY KEY (id, ts)), or declare "
                             "the model's primary key on columns that are unique."),
    "unlogged": ("pgnotify.E036", "ALTER TABLE ... SET LOGGED, or use PGNOTIFY['SOURCE'] = 'notify' (triggers see "
                                  "unlogged tables)."),
}


@register(Tags.database)
def check_watched_tables(app_configs=None, databases=None, **kwargs):
    """Every watched table as the database has it: a trigger (or, with the WAL source, the
    publication) must be able to serve it."""
    if not isinstance(conf.get("WATCH"), dict) or not isinstance(conf.get("CACHE_INVALIDATE"), dict):
        return []  # reported by the checks above
    return [message for database in _served(databases) for message in _check_tables_of(database)]


def _check_tables_of(database: str) -> list:
    tables, _ = watched_tables(database)  # entries that cannot be used: reported by the checks above
    try:
        with _connect(database) as connection:
            facts = fetch_table_facts(connection.cursor(), tables)
    except Exception as error:  # a check must not raise: the database may be down, or not created yet
        where = "" if database == "default" else f" of database {database!r}"
        return [Warning(f"pgnotify could not inspect the watched tables{where}: {one_line(error)}.",
                        hint="Run manage.py check where the database is reachable to check them.", id="pgnotify.W020")]
    messages: list[CheckMessage] = []
    refuse = wal_refusal if conf.source() == "wal" else refusal
    for name, table in tables.items():
        models = ", ".join(table.models)
        table_facts = facts[name]
        refused = refuse(table, table_facts)
        if refused is None:
            assert table_facts is not None  # else refused: "missing"
            for part in table_facts.foreign_partitions():
                messages.append(Warning(
                    f"{part.display}, a partition of {table_facts.relation.display} ({models}), is a "
                    f"{part.kind_name}: writes straight to it send no events.",
                    hint="Write through the partitioned table, or make the partition a table.", id="pgnotify.W022"))
        elif refused[0] in _REFUSALS:
            message_id, hint = _REFUSALS[refused[0]]
            messages.append(Error(f"{models}: {refused[1]}.", hint=hint, id=message_id))
        elif not all(model_or_none(label)._meta.managed for label in table.models):
            # A managed model's table comes with migrate; an unmanaged one's is the project's to create.
            messages.append(Warning(f"{models}: {refused[1]}.",
                                    hint="Create it (e.g. in a migration) and run migrate: its triggers are "
                                         "attached then.", id="pgnotify.W023"))
    return messages


@register()
def check_cache_invalidate(app_configs=None, **kwargs):
    mapping = conf.get("CACHE_INVALIDATE")
    if not isinstance(mapping, dict):
        return [Error("PGNOTIFY['CACHE_INVALIDATE'] must be a dict of model label -> list of tags.",
                      hint='e.g. {"shop.Product": ["catalog"]}', id="pgnotify.E006")]
    errors = []
    for label, tags in mapping.items():
        if model_or_none(label) is None:
            errors.append(Error(f"PGNOTIFY['CACHE_INVALIDATE'] names unknown model {label!r}.",
                                hint="Use 'app_label.ModelName' of an installed app.", id="pgnotify.E016"))
        elif not isinstance(tags, list | tuple) or not tags or not all(isinstance(t, str) and t for t in tags):
            errors.append(Error(f"PGNOTIFY['CACHE_INVALIDATE'][{label!r}] must be a non-empty list of tags.",
                                hint='e.g. ["catalog"]', id="pgnotify.E017"))
    return errors


@register()
def check_listen(app_configs=None, **kwargs):
    channels = conf.get("LISTEN")
    if isinstance(channels, str) or not isinstance(channels, list | tuple):
        return [Error("PGNOTIFY['LISTEN'] must be a list of channel names.", hint=HINT_CHANNEL, id="pgnotify.E007")]
    bad = [c for c in channels if not valid_channel(c)]
    if bad:
        return [Error(f"PGNOTIFY['LISTEN'] has invalid channel names {bad!r}.", hint=HINT_CHANNEL,
                      id="pgnotify.E019")]
    return []


@register()
def check_retention(app_configs=None, **kwargs):
    retention = conf.get("RETENTION")
    seconds = retention.total_seconds() if isinstance(retention, timedelta) else retention
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 60 <= seconds <= 366 * 86400:
        return [Error(f"PGNOTIFY['RETENTION'] must be a number of seconds from 60 to 31,622,400, not {retention!r}.",
                      hint="e.g. 24 * 3600 (a day) or datetime.timedelta(days=7).", id="pgnotify.E009")]
    return []


@register()
def check_handlers(app_configs=None, **kwargs):
    entries = conf.get("HANDLERS")
    problem = handlers_problem(entries)
    if problem:
        return [Error(problem, hint='e.g. ["myapp.handlers.audit", {"handler": "...", "channels": ["orders"]}]',
                      id="pgnotify.E023")]
    errors = []
    for entry in entries:
        problem = handler_problem(entry)
        if problem:
            errors.append(Error(handler_error_line(problem),
                                hint='A dotted path, or {"handler": path, "channels": [...], "options": {...}, '
                                     '"timeout": seconds}.',
                                id="pgnotify.E010"))
    return errors


@register()
def check_cache(app_configs=None, **kwargs):
    alias = conf.get("CACHE")
    caches = getattr(settings, "CACHES", {})
    if not isinstance(alias, str) or alias not in caches:
        return [Error(f"PGNOTIFY['CACHE'] names cache {alias!r}, which is not in CACHES.",
                      hint=f"Use one of: {', '.join(caches) or '(none)'}.", id="pgnotify.E011")]
    backend = str(caches[alias].get("BACKEND", ""))
    if backend.endswith((".LocMemCache", ".DummyCache")):
        return [Warning(f"pgnotify's cache {alias!r} ({backend.rsplit('.', 1)[-1]}) is not shared between "
                        "processes: pgnotify.cache.cached() will compute every value.",
                        hint="Use a shared backend: RedisCache, DatabaseCache or Memcached.", id="pgnotify.W001")]
    return []


@register()
def check_channel_layer(app_configs=None, **kwargs):
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    backend = str((layers.get("default") or {}).get("BACKEND", ""))
    for prefix, (module, extra) in LAYER_PACKAGES.items():
        if backend.startswith(prefix):
            if not installed(module):
                return [Error(f"CHANNEL_LAYERS['default'] uses {backend}, but {module!r} is not installed.",
                              hint=f'pip install "django-pgnotify[{extra}]"', id="pgnotify.E012")]
            if module == "channels_postgres" and not apps.is_installed("channels_postgres"):
                return [Error(f"CHANNEL_LAYERS['default'] uses {backend}, whose tables come with the app "
                              "'channels_postgres'.", hint="Add 'channels_postgres' to INSTALLED_APPS and migrate.",
                              id="pgnotify.E013")]
    return []


# -- the WAL source (PGNOTIFY["SOURCE"] = "wal"): what the server must allow

_WAL_STATE = """
    SELECT current_setting('wal_level'), current_setting('server_version_num')::int,
           (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
           current_setting('max_slot_wal_keep_size'),
           (SELECT count(*) FROM pg_publication WHERE pubname = %s),
           (SELECT count(*) FROM pg_trigger WHERE tgname = 'pgnotify_change' AND NOT tgisinternal),
           has_database_privilege(current_database(), 'CREATE'), quote_ident(current_user),
           quote_ident(current_database())
"""


@register()
def check_source(app_configs=None, **kwargs):
    source = conf.get("SOURCE")
    if source not in conf.SOURCES:
        return [Error(f"PGNOTIFY['SOURCE'] must be 'notify' or 'wal', not {source!r}.",
                      hint="'notify': triggers and NOTIFY (the default); 'wal': logical decoding (docs/sources.md).",
                      id="pgnotify.E030")]
    warning = conf.get("WAL_RETAINED_WARNING")
    if isinstance(warning, bool) or not isinstance(warning, int) or warning <= 0:
        return [Error(f"PGNOTIFY['WAL_RETAINED_WARNING'] must be a positive number of bytes, not {warning!r}.",
                      hint="e.g. 1 << 30 (1 GiB).", id="pgnotify.E035")]
    return []


@register()
def check_collector(app_configs=None, **kwargs):
    errors = []
    if not isinstance(conf.get("GC_FREEZE"), bool):
        errors.append(Error(f"PGNOTIFY['GC_FREEZE'] must be True or False, not {conf.get('GC_FREEZE')!r}.",
                            hint="False leaves Python's collector alone (docs/live.md, \"Many sockets\").",
                            id="pgnotify.E087"))
    thaw = conf.get("GC_THAW")
    if isinstance(thaw, bool) or not isinstance(thaw, int | float) or thaw <= 0:
        errors.append(Error(f"PGNOTIFY['GC_THAW'] must be a positive number of seconds, not {thaw!r}.",
                            hint="e.g. 3600: once an hour the next full collection walks every object.",
                            id="pgnotify.E088"))
    return errors


@register(Tags.database)
def check_wal_server(app_configs=None, databases=None, **kwargs):
    """With the WAL source: what the server of each named database must allow."""
    if conf.get("SOURCE") != "wal":
        return []
    return [problem for alias in _served(databases) for problem in _wal_server_problems(alias)]


def _wal_server_problems(alias: str) -> list:
    try:
        with _connect(alias) as connection:
            state = connection.execute(_WAL_STATE, [PUBLICATION]).fetchone()
            assert state is not None  # one row of settings and facts
            wal_level, version, replication, keep_size, publications, triggers, create, role, database = state
    except Exception:  # a check must not raise: an unreachable database is reported where it is used (W020)
        return []
    problems: list[CheckMessage] = []
    if version < 150000:
        problems.append(Error(f"The WAL source needs PostgreSQL 15 or newer (column lists); this server is "
                              f"{version // 10000}.", hint="Upgrade, or use PGNOTIFY['SOURCE'] = 'notify'.",
                              id="pgnotify.E033"))
    if wal_level != "logical":
        problems.append(Error(f"The WAL source needs wal_level = logical; the server has {wal_level}.",
                              hint="ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL.",
                              id="pgnotify.E032"))
    if not replication:
        problems.append(Error(f"The WAL source needs a role with REPLICATION; role {role} has no REPLICATION.",
                              hint=f"ALTER ROLE {role} REPLICATION; (managed servers: GRANT rds_replication TO "
                                   f"{role}; on RDS/Aurora, cloudsql.logical_decoding = on and ALTER ROLE {role} "
                                   "REPLICATION on Cloud SQL, ALTER ROLE ... REPLICATION by an azure_pg_admin "
                                   "member on Azure).", id="pgnotify.E034"))
    if not publications and not create:
        problems.append(Error(f"The WAL source needs CREATE on the database to create publication {PUBLICATION}; "
                              f"role {role} has no CREATE on database {database}.",
                              hint=f"GRANT CREATE ON DATABASE {database} TO {role}; (or have the owner of the "
                                   f"tables create publication {PUBLICATION}), then run `manage.py migrate`.",
                              id="pgnotify.E039"))
    if keep_size == "-1":
        problems.append(Warning("max_slot_wal_keep_size is unlimited: a listener name that is never run again "
                                "keeps WAL until the disk is full.",
                                hint="Set it above the WAL of the largest transaction plus the WAL written while a "
                                "listener is behind or away (docs/sources.md: sizing; e.g. ALTER SYSTEM SET "
                                "max_slot_wal_keep_size = '10GB'), and drop retired "
                                "names' slots with `manage.py pgnotify_slots --drop NAME`.", id="pgnotify.W030"))
    if not publications or triggers:
        problems.append(Warning("The database is not set up for the WAL source yet (publication missing or change "
                                "triggers still attached).", hint="Run `manage.py migrate`.", id="pgnotify.W031"))
    return problems


_SLOTS = """
    SELECT s.slot_name, s.active_pid IS NOT NULL, s.wal_status, s.confirmed_flush_lsn::text,
           pg_current_wal_lsn()::text, pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint
      FROM pg_replication_slots s
     WHERE s.database = current_database() AND s.plugin = 'pgoutput' AND s.slot_name LIKE 'pgnotify\\_%%'
     ORDER BY s.slot_name
"""
# Event-log positions (not the WAL listener's "wal:" rows) older than the retention.
_STALE_POSITIONS = """
    SELECT p.name, date_trunc('second', now() - p.updated_at)::text,
           (SELECT min(id) FROM pgnotify_event), (SELECT min(created_at) FROM pgnotify_event)::text
      FROM pgnotify_listener p WHERE p.name NOT LIKE 'wal:%%' AND p.updated_at < now() - %s ORDER BY p.name
"""


@register(Tags.database)
def check_positions_and_slots(app_configs=None, databases=None, **kwargs):
    """Losses while they last: an invalidated slot, a slot left over after a switch to NOTIFY, an
    event-log position older than the retention (events after it may have been pruned)."""
    if conf.get("SOURCE") not in conf.SOURCES:
        return []
    return [problem for alias in _served(databases) for problem in _losses(alias)]


def _losses(alias: str) -> list:
    try:
        with _connect(alias) as connection:
            slots = connection.execute(_SLOTS).fetchall()
            stale = []
            if conf.source() == "notify":
                stale = connection.execute(_STALE_POSITIONS, [conf.retention()]).fetchall()
    except Exception:  # a check must not raise: the database may be down, or not migrated yet
        return []  # reported where it is used (W020)
    problems: list[CheckMessage] = []
    for slot, active, status, confirmed, current, retained in slots:
        if status == "lost":
            problems.append(Warning(
                f"Replication slot {slot} was invalidated (max_slot_wal_keep_size): the changes committed from LSN "
                f"{confirmed} to {current} and later, until its listener makes it anew, are lost.",
                hint="Start its listener (it reports the range and goes on), or drop the slot of a retired name "
                f"(`manage.py pgnotify_slots --drop {slot}`); size the limit: docs/sources.md.", id="pgnotify.W040"))
        elif conf.source() == "notify" and not active:
            problems.append(Warning(
                f"Replication slot {slot} is left over from the WAL source: it retains {(retained or 0) >> 20} MB of "
                f"WAL, and the changes after LSN {confirmed} it holds were never handed on by it.",
                hint="Run `manage.py migrate` (it hands the slot over or says how), or drop it "
                f"(`manage.py pgnotify_slots --drop {slot}`).", id="pgnotify.W041"))
    for name, age, oldest_id, oldest_at in stale:
        kept = f"the oldest event kept is id {oldest_id} of {oldest_at}" if oldest_id else "no event is kept"
        problems.append(Warning(
            f"The position of listener '{name}' is {age} old, older than the retention: events logged after it and "
            f"pruned since are lost ({kept}; the lost ones have lower ids).",
            hint="Run its listener (it reports the loss and goes on), or delete a retired name's position "
            f"(DELETE FROM pgnotify_listener WHERE name = '{name}').", id="pgnotify.W042"))
    return problems


# -- PGNOTIFY["DIRECT"]: the listener's sessions reach the database directly (a pooler for the rest)

HINT_DIRECT = 'e.g. PGNOTIFY = {"DIRECT": {"default": "direct"}}, where DATABASES["direct"] reaches the same ' \
              'database without a transaction pooler.'
PROBE_SECONDS = 3.0


@register()
def check_direct(app_configs=None, **kwargs):
    direct = conf.get("DIRECT")
    if not isinstance(direct, dict):
        return [Error("PGNOTIFY['DIRECT'] must be a dict of database alias -> direct alias.", hint=HINT_DIRECT,
                      id="pgnotify.E050")]
    unknown = sorted({str(alias) for pair in direct.items() for alias in pair} - set(settings.DATABASES))
    if unknown:
        return [Error(f"PGNOTIFY['DIRECT'] names database aliases {unknown}, which are not in DATABASES.",
                      hint=HINT_DIRECT, id="pgnotify.E052")]
    return []


@register(Tags.database)
def check_listener_sessions(app_configs=None, databases=None, **kwargs):
    """`check --database ALIAS`: the listener's sessions for ALIAS must receive other sessions'
    notifications (a transaction pooler drops them: the listener would refuse to start)."""
    if check_direct():
        return []  # reported above
    messages: list[CheckMessage] = []
    for alias in databases or ():
        if alias not in {"default", *conf.get("DIRECT")} or connections[alias].vendor != "postgresql":
            continue
        try:
            works = can_listen({**listener_conninfo(alias), "connect_timeout": 3}, PROBE_SECONDS)
        except Exception:  # a check must not raise: an unreachable database is reported where it is used
            continue
        if not works:
            messages.append(Error(
                f"Database {conf.direct_alias(alias)!r} does not deliver notifications between sessions (behind a "
                f"transaction pooler?): the listener cannot LISTEN through it; set PGNOTIFY[\"DIRECT\"] "
                f"for {alias!r}.", hint=HINT_DIRECT, id="pgnotify.E051"))
    return messages


@register()
def check_streams(app_configs=None, **kwargs):
    from .web.live import streams  # the web side's own declarations (imported late: checks load early)

    value = conf.get("STREAMS")
    if not isinstance(value, dict):
        return [Error("PGNOTIFY['STREAMS'] must map stream names to declarations.", hint=HINT_STREAMS,
                      id="pgnotify.E086")]
    return [Error(message, hint=HINT_STREAMS, id=f"pgnotify.{check_id}")
            for name, declaration in value.items() for check_id, message in streams.problems(name, declaration)]


# -- least privilege (docs/operations.md, "Rights"): each missing right, with the statement that grants it

# The PostgreSQL channel layer's tables (channels_postgres): web processes and the listener use them.
LAYER_TABLES = ("channels_postgres_message", "channels_postgres_groupchannel")
_ROLE = ("SELECT quote_ident(current_user), quote_ident(current_schema()), "
         "has_schema_privilege(current_schema(), 'CREATE')")
_OWNERS = """
    SELECT c.oid, pg_has_role(c.relowner, 'USAGE'), quote_ident(pg_get_userbyid(c.relowner))
      FROM pg_class c WHERE c.oid = ANY(%s)
"""


@register(Tags.database)
def check_rights(app_configs=None, databases=None, **kwargs):
    """`check --database ALIAS` (and `migrate`): what the database role lacks to migrate, write,
    listen and serve the channel layer, one line each with its GRANT or ALTER."""
    if any(isinstance(message, Error) for message in [*check_source(), *check_wal_server(databases=databases),
                                                      *check_watched_tables(databases=databases)]):
        return []  # a setting or a table reported above comes first
    messages: list[CheckMessage] = []
    for alias in _served(databases):
        if _reachable(alias):
            try:
                messages += _rights(alias)
            except DjangoDatabaseError:
                continue  # reported where it is used
    return messages


def _reachable(alias: str) -> bool:
    """Whether the database answers at once: Django's pool would wait its whole timeout for one
    that does not (and an unreachable database is reported where it is used)."""
    try:
        with _connect(alias):
            return True
    except Exception:
        return False


def _rights(alias: str) -> list:
    from .schema import rights

    try:
        pending = rights.pending_migrations(alias)
    except DjangoDatabaseError:  # a role that may not read django_migrations (a writer's) does not migrate
        pending = None
    with connections[alias].cursor() as cursor:
        cursor.execute(_ROLE)
        role, schema, create = cursor.fetchone()
        if pending and not create:
            names = ", ".join(f"{m.app_label}.{m.name}" for m in pending)
            return [Error(f"pgnotify's migrations {names} are not applied, and role {role} has no CREATE on schema "
                          f"{schema} for their tables and functions.",
                          hint=f"GRANT CREATE ON SCHEMA {schema} TO {role}; or have a DBA run the SQL "
                               "`manage.py pgnotify_sql` prints, then run `manage.py migrate`.", id="pgnotify.E071")]
        messages = _table_rights(cursor, role)
    if pending == []:
        statements = rights.sync_statements(alias) or []
        messages += _owned(alias, role, statements)
        if not create and any("CREATE OR REPLACE FUNCTION" in statement for statement in statements):
            messages.append(Error(f"role {role} has no CREATE on schema {schema} for the change functions of watched "
                                  "tables: pgnotify cannot attach their triggers.",
                                  hint=f"GRANT CREATE ON SCHEMA {schema} TO {role}; or have a DBA run the SQL "
                                       "`manage.py pgnotify_sql` prints.", id="pgnotify.E075"))
    return messages


def _table_rights(cursor, role: str) -> list:
    from .schema import rights

    messages: list[CheckMessage] = []
    writer = [f"{', '.join(missing)} on {table}" for table, privileges in rights.WRITER
              if (missing := rights.missing(cursor, table, privileges))]
    if rights.sequence_usage_missing(cursor):
        writer.append(f"USAGE on sequence {rights.EVENT_SEQUENCE}")
    if writer and conf.source() == "notify":
        messages.append(Error(f"Writes to watched tables as role {role} would fail: the change trigger runs as the "
                              f"writer, and {role} has no {'; no '.join(writer)}.",
                              hint=rights.grants(rights.WRITER, role) +
                              f" GRANT USAGE ON SEQUENCE {rights.EVENT_SEQUENCE} TO {role};", id="pgnotify.E072"))
    listener = [f"{', '.join(missing)} on {table}" for table, privileges in rights.LISTENER
                if (missing := rights.missing(cursor, table, privileges))]
    if listener:
        messages.append(Error(f"The listener cannot run as role {role}: it has no {'; no '.join(listener)}.",
                              hint=rights.grants(rights.LISTENER, role), id="pgnotify.E073"))
    backend = str(((getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default") or {}).get("BACKEND", ""))
    if any(backend.startswith(prefix) for prefix, (module, _) in LAYER_PACKAGES.items()
           if module == "channels_postgres"):
        layer = [(table, rights.DML) for table in LAYER_TABLES if rights.missing(cursor, table, rights.DML)]
        if layer:
            messages.append(Error(f"The PostgreSQL channel layer cannot work as role {role}: it has no "
                                  f"{rights.DML} on {', '.join(table for table, _ in layer)}.",
                                  hint=rights.grants(layer, role), id="pgnotify.E074"))
    return messages


def _owned(alias: str, role: str, statements: list[str]) -> list:
    """Watched tables the trigger (or publication) sync would change (`statements`) but the role does not own."""
    tables, _ = watched_tables()
    with connections[alias].cursor() as cursor:
        facts = fetch_table_facts(cursor, tables)
        relations = [relation for fact in facts.values() if fact for relation, _ in fact.relations()]
        cursor.execute(_OWNERS, [[relation.oid for relation in relations]])
        owners = {oid: (owned, owner) for oid, owned, owner in cursor.fetchall()}
        touched = [(relation, owners[relation.oid][1], relation.identifier.as_string(cursor.connection))
                   for relation in relations if not owners[relation.oid][0]]
    touched = [entry for entry in touched if any(entry[2] in statement for statement in statements)]
    if not touched:
        return []
    what = "publish them and set their replica identity" if conf.source() == "wal" else "attach their triggers"
    names = ", ".join(f"{relation.display} (owner {owner})" for relation, owner, _ in touched)
    _, owner, identifier = touched[0]
    return [Error(f"role {role} does not own {names}: pgnotify cannot {what}.",
                  hint=f"ALTER TABLE {identifier} OWNER TO {role}; (each), or run `manage.py "
                       f"migrate` as {owner}, or have a DBA run the SQL `manage.py pgnotify_sql` prints.",
                  id="pgnotify.E070")]
