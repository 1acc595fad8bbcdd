"""A new user's path, walked as a user walks it: the wheel built from this checkout, installed into
fresh virtualenvs with only its declared dependencies (no extras; then `[redis,daphne]`), a project
made by `django-admin startproject`, an app with one model WATCHed with an excluded column,
`migrate`, `check`, `listen_notify --json`, and the project's own dashboard websocket under daphne.

The virtualenvs are built once per wheel (kept under build/, keyed by the wheel's hash), so the
second PostgreSQL run of CI reuses them; the project and its database are new on every run.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from psycopg import sql
from websockets.sync.client import connect as websocket_connect

from pgnotify.connection import listener_conninfo
from tests.helpers.support import ROOT, ManagedProcess, free_port
from tests.helpers.web import REDIS_HOST, REDIS_PORT, redis_reachable

pytestmark = [pytest.mark.once, pytest.mark.slow, pytest.mark.timeout(600)]
VENVS = ROOT / "build" / "new-user"
MODELS = '''
from django.db import models


class Post(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    secret = models.CharField(max_length=100, blank=True)
'''


def run(*args, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    command = " ".join(map(str, args))
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--wheel", "--outdir", out, ROOT, cwd=ROOT)
    (built,) = out.glob("django_pgnotify-*.whl")
    return built


def virtualenv(wheel: Path, extras: str) -> Path:
    """A virtualenv with `wheel[extras]` and what it declares, nothing else; made once per wheel."""
    # One per wheel, Python and Django release (.ci/matrix asks for a release by PIP_CONSTRAINT).
    constraint = Path(os.environ["PIP_CONSTRAINT"]).read_bytes() if os.environ.get("PIP_CONSTRAINT") else b""
    digest = hashlib.sha256(wheel.read_bytes() + constraint).hexdigest()[:12]
    home = VENVS / f"py{sys.version_info.major}.{sys.version_info.minor}" / f"{extras or 'core'}-{digest}"
    python = home / "bin" / "python"
    if not (home / ".complete").exists():
        for stale in home.parent.glob(f"{extras or 'core'}-*"):  # those of earlier wheels, and a half-made one
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        run(sys.executable, "-m", "venv", home, cwd=ROOT)
        requirement = f"django-pgnotify[{extras}] @ {wheel.as_uri()}" if extras else str(wheel)
        run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", requirement, cwd=ROOT, timeout=600)
        (home / ".complete").write_text(f"{time.monotonic() - started:.1f}\n")
        print(f"\nnew virtualenv with {requirement.split(' @ ')[0]}: {time.monotonic() - started:.1f} s")
    return home


@pytest.fixture
def database(db):
    """A new database for the new project, on the server the tests use."""
    name = f"{connection.settings_dict['NAME']}_newuser_{uuid.uuid4().hex[:8]}"
    with psycopg.Connection.connect(autocommit=True, **listener_conninfo()) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        try:
            yield {**listener_conninfo(), "dbname": name}
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def new_project(home: Path, where: Path, database: dict, extra_settings: str = "") -> tuple[Path, dict]:
    """`django-admin startproject mysite` + `startapp blog` with one model, settings as the README says."""
    env = {"PATH": f"{home / 'bin'}:/usr/bin:/bin", "HOME": str(where), "PYTHONDONTWRITEBYTECODE": "1"}
    run(home / "bin" / "django-admin", "startproject", "mysite", where, cwd=where, env=env)
    python = home / "bin" / "python"
    run(python, "manage.py", "startapp", "blog", cwd=where, env=env)
    (where / "blog" / "models.py").write_text(MODELS)
    db_settings = {"ENGINE": "django.db.backends.postgresql", "NAME": database["dbname"],
                   "USER": database.get("user") or "postgres", "PASSWORD": database.get("password") or "",
                   "HOST": database.get("host") or "", "PORT": str(database.get("port") or "")}
    with open(where / "mysite" / "settings.py", "a") as settings:
        settings.write(textwrap.dedent(f"""
            INSTALLED_APPS += ["channels", "pgnotify", "blog"]
            DATABASES = {{"default": {db_settings!r}}}
            CACHES = {{"default": {{"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                                    "LOCATION": "site_cache"}}}}
            PGNOTIFY = {{"WATCH": {{"blog.Post": {{"channel": "posts", "exclude": ["secret"]}}}}}}
        """) + textwrap.dedent(extra_settings))
    return python, env


def listen(python: Path, where: Path, env: dict) -> ManagedProcess:
    listener = ManagedProcess("listen_notify", "--json", "--stats-interval", "0", python=python, cwd=where,
                              env={**env, "PYTHONUNBUFFERED": "1"})
    listener.wait_for_line("': live", timeout=30, stream="stderr")
    return listener


def write_posts(database: dict) -> int:
    with psycopg.Connection.connect(autocommit=True, **database) as conn:
        (pk,) = conn.execute("INSERT INTO blog_post (title, body, secret) VALUES ('hello', 'first', 's3cr3t-value') "
                             "RETURNING id").fetchone()
        conn.execute("UPDATE blog_post SET title = 'hello again', secret = 'another-s3cr3t' WHERE id = %s", [pk])
    return pk


def test_core_install_without_extras(wheel, database, tmp_path):
    home = virtualenv(wheel, "")
    python, env = new_project(home, tmp_path, database)
    versions = run(python, "-c", "import django, sys; print(django.get_version(), sys.version.split()[0])",
                   cwd=tmp_path, env=env).stdout.split()
    print(f"\nnew user's virtualenv: Django {versions[0]} on Python {versions[1]}")
    if wanted := os.environ.get("PIP_CONSTRAINT"):  # .ci/matrix asks for a Django release
        assert f"Django=={versions[0]}" in Path(wanted).read_text().split()
    run(python, "manage.py", "makemigrations", "blog", cwd=tmp_path, env=env)
    migrated = run(python, "manage.py", "migrate", cwd=tmp_path, env=env)
    assert "pgnotify: attached pgnotify_change on blog_post" in migrated.stdout
    with psycopg.Connection.connect(autocommit=True, **database) as conn:
        made = {name for (name,) in conn.execute("SELECT regexp_replace(proname, '_[0-9a-f]{12}$', '') FROM pg_proc "
                                                 "WHERE proname LIKE 'pgnotify%' UNION ALL "
                                                 "SELECT relname FROM pg_class WHERE relname LIKE 'pgnotify%' "
                                                 "AND relkind = 'r'")}
    # One change function, the watched table's own, and no chat table: the chat is not installed.
    assert made == {"pgnotify_log_changes", "pgnotify_jsonb_row", "pgnotify_invalidate_cache", "pgnotify_event",
                    "pgnotify_listener", "pgnotify_change_blog_post"}
    checked = run(python, "manage.py", "check", cwd=tmp_path, env=env)
    assert "no issues" in checked.stdout

    # migrate alone leaves a working cache: its DatabaseCache table exists, cached() computes meanwhile.
    cached = run(python, "manage.py", "shell", "--no-imports", "-c",
                 "from pgnotify.cache import cached, listener_live; print(cached('k', ['posts'], lambda: 42), "
                 "listener_live())", cwd=tmp_path, env=env)
    assert cached.stdout.split() == ["42", "False"] and "Traceback" not in cached.stderr
    imported = run(python, "manage.py", "shell", "--no-imports", "-c",
                   "import pgnotify.routing, pgnotify.urls; print(len(pgnotify.routing.websocket_urlpatterns))",
                   cwd=tmp_path, env=env)
    assert imported.stdout.split() == ["2"]  # the dashboard's and the live streams' (the chat is not installed)

    listener = listen(python, tmp_path, env)
    try:
        listener.wait_for_line("CHANNEL_LAYERS is not set", stream="stderr")
        pk = write_posts(database)
        listener.wait_for_line('"op":"UPDATE"', timeout=15)
    finally:
        listener.stop()
    lines = listener.stdout_lines + listener.stderr_lines
    events = [json.loads(line)["payload"] for line in listener.stdout_lines]
    assert [(e["op"], e["pk"], e["row"]["title"]) for e in events] == [("INSERT", pk, "hello"),
                                                                       ("UPDATE", pk, "hello again")]
    assert events[1]["changed"] == ["title"]
    assert "s3cr3t" not in "\n".join(lines) and all("secret" not in e["row"] for e in events)

    # Optional parts say which extra they need, in one line.
    metrics = subprocess.run([python, "manage.py", "listen_notify", "--metrics-port", str(free_port())],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert metrics.returncode != 0 and 'pip install "django-pgnotify[metrics]"' in metrics.stderr
    assert "Traceback" not in metrics.stderr and len(metrics.stderr.strip().splitlines()) == 1
    with open(tmp_path / "mysite" / "settings.py", "a") as settings:
        settings.write('\nCHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}\n')
    layer = subprocess.run([python, "manage.py", "check"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60)
    assert layer.returncode != 0 and "pgnotify.E012" in layer.stderr
    assert 'pip install "django-pgnotify[redis]"' in layer.stderr and "Traceback" not in layer.stderr


ASGI = '''
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

import pgnotify.routing  # noqa: E402
from pgnotify.web.security import OriginValidator  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": OriginValidator(AuthMiddlewareStack(URLRouter(pgnotify.routing.websocket_urlpatterns))),
})
'''


@pytest.mark.skipif(not redis_reachable(), reason=f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}")
def test_redis_install_serves_the_dashboard_under_daphne(wheel, database, tmp_path):
    home = virtualenv(wheel, "redis,daphne")
    prefix = f"newuser{uuid.uuid4().hex[:8]}"
    python, env = new_project(home, tmp_path, database, extra_settings=f"""
        ASGI_APPLICATION = "mysite.asgi.application"
        CHANNEL_LAYERS = {{"default": {{"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {{
            "hosts": [{{"address": "redis://{REDIS_HOST}:{REDIS_PORT}/4", "socket_timeout": 15,
                        "max_connections": 1000}}],
            "prefix": "{prefix}"}}}}}}
    """)
    (tmp_path / "mysite" / "asgi.py").write_text(ASGI)
    urls = tmp_path / "mysite" / "urls.py"
    urls.write_text(urls.read_text().replace("from django.urls import path", "from django.urls import include, path")
                    + '\nurlpatterns += [path("", include("pgnotify.urls"))]\n')
    run(python, "manage.py", "makemigrations", "blog", cwd=tmp_path, env=env)
    run(python, "manage.py", "migrate", cwd=tmp_path, env=env)
    assert "no issues" in run(python, "manage.py", "check", cwd=tmp_path, env=env).stdout
    session = run(python, "manage.py", "shell", "--no-imports", "-c", textwrap.dedent("""
        from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY
        from django.contrib.sessions.backends.db import SessionStore
        user = get_user_model().objects.create_superuser("staff", "staff@example.com", "staff-password-1")
        store = SessionStore()
        store[SESSION_KEY], store[HASH_SESSION_KEY] = str(user.pk), user.get_session_auth_hash()
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store.create()
        print(store.session_key)
    """), cwd=tmp_path, env=env).stdout.split()[-1]

    port = free_port()
    daphne = ManagedProcess("-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "mysite.asgi:application",
                            python=python, cwd=tmp_path, env=env, manage=False)
    listener = listen(python, tmp_path, env)
    try:
        daphne.wait_for_line(f"127.0.0.1:{port}", timeout=30, stream="stderr")
        origin = f"http://127.0.0.1:{port}"
        with websocket_connect(f"ws://127.0.0.1:{port}/ws/dashboard/", open_timeout=10, origin=origin,
                               additional_headers={"Cookie": f"sessionid={session}"}) as socket:
            pk = write_posts(database)
            changes, deadline = [], time.monotonic() + 15
            while len(changes) < 2 and time.monotonic() < deadline:
                frame = json.loads(socket.recv(timeout=deadline - time.monotonic()))
                assert "s3cr3t" not in json.dumps(frame)
                if frame["type"] == "changes":
                    changes += [e for e in frame["events"] if e["table"] == "blog_post"]
        assert [(e["op"], e["pk"]) for e in changes] == [("INSERT", pk), ("UPDATE", pk)]
        # Anonymous sockets are refused.
        with pytest.raises(Exception):  # noqa: B017 - websockets raises its own handshake or close errors
            with websocket_connect(f"ws://127.0.0.1:{port}/ws/dashboard/", open_timeout=10, origin=origin) as anon:
                anon.recv(timeout=5)
    finally:
        listener.stop()
        daphne.stop()


def test_the_distribution_holds_what_the_app_needs_and_passes_twine(tmp_path):
    run(sys.executable, "-m", "build", "--outdir", tmp_path, ROOT, cwd=ROOT)
    (wheel,), (sdist,) = tmp_path.glob("*.whl"), tmp_path.glob("*.tar.gz")
    run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist, cwd=ROOT)
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ["pgnotify/schema/sql/log_changes.sql", "pgnotify/migrations/0001_initial.py",
                   "pgnotify/migrations/0001_squashed_0007_notify_change_v5.py",
                   "pgnotify/migrations/sql/notify_change_v1.sql",
                   "pgnotify/templates/pgnotify/dashboard.html", "pgnotify/static/pgnotify/dashboard.js",
                   "pgnotify/contrib/chat/migrations/0001_initial.py",
                   "pgnotify/contrib/chat/templates/pgnotify_chat/chat.html", "pgnotify/py.typed"]:
        assert needed in names
    assert not [name for name in names if name.startswith(("notifyproject/", "tests/", "bench/"))]
    # The demo's walkthroughs need the demo's shop.Order: they stay in the demo project.
    assert not [name for name in names if "demo" in name], [name for name in names if "demo" in name]
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Classifier: Framework :: Django :: 5.2" in metadata and "License-Expression: MIT" in metadata
    assert 'Provides-Extra: redis' in metadata and "channels-redis<4.4" in metadata.replace(" ", "")


SHOP_MODELS = '''
from django.db import models


class Order(models.Model):
    status = models.CharField(max_length=20, default="new")
    total = models.DecimalField(max_digits=30, decimal_places=10, default=0)


class Product(models.Model):
    name = models.CharField(max_length=100)
'''


def readme_files() -> list[tuple[str, str, str]]:
    """The README's "Add pgnotify to your project" blocks that name a file: (path, how, text), in order.

    A block's first line names its file and how it goes in: `# mysite/urls.py, at the end` or
    `{# templates/admin/base_site.html, the whole file ... #}`."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Add pgnotify to your project"):]
    section = section[:section.index("\n## ", 1)]
    files = []
    for _indent, block in re.findall(r"^( *)```(?:python|django)\n(.*?)^\1```", section, flags=re.M | re.S):
        text = textwrap.dedent(block)
        named = re.match(r"(?:#|\{#) (\S+), (at the end|the whole file)", text)
        if named:
            files.append((named[1], named[2], text))
    return files


def readme_project(home: Path, where: Path, database: dict, layer_prefix: str) -> tuple[Path, dict]:
    """`startproject mysite` and `startapp shop` (the README's models), then the README's blocks as
    written; the test adds only what is the project's own: its app, database and Redis."""
    env = {"PATH": f"{home / 'bin'}:/usr/bin:/bin", "HOME": str(where), "PYTHONDONTWRITEBYTECODE": "1"}
    run(home / "bin" / "django-admin", "startproject", "mysite", where, cwd=where, env=env)
    python = home / "bin" / "python"
    run(python, "manage.py", "startapp", "shop", cwd=where, env=env)
    (where / "shop" / "models.py").write_text(SHOP_MODELS)
    (where / "shop" / "admin.py").write_text("from django.contrib import admin\n\nfrom .models import Order\n\n"
                                             "admin.site.register(Order)\n")
    files = readme_files()
    assert {path for path, _, _ in files} >= {"mysite/settings.py", "mysite/asgi.py", "mysite/urls.py",
                                              "templates/admin/base_site.html"}, files
    for path, how, text in files:
        target = where / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((target.read_text() + "\n" if how == "at the end" else "") + text)
    db_settings = {"ENGINE": "django.db.backends.postgresql", "NAME": database["dbname"],
                   "USER": database.get("user") or "postgres", "PASSWORD": database.get("password") or "",
                   "HOST": database.get("host") or "", "PORT": str(database.get("port") or "")}
    with open(where / "mysite" / "settings.py", "a") as settings:
        settings.write(textwrap.dedent(f"""
            INSTALLED_APPS += ["shop"]
            DATABASES = {{"default": {db_settings!r}}}
            CHANNEL_LAYERS = {{"default": {{"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {{
                "hosts": [{{"address": "redis://{REDIS_HOST}:{REDIS_PORT}/4", "max_connections": 1000}}],
                "prefix": "{layer_prefix}"}}}}}}
        """))
    return python, env


def readme_command(name: str) -> list[str]:
    """A `manage.py` command as the README's bash blocks give it, without the trailing comment."""
    readme = (ROOT / "README.md").read_text()
    (line,) = [line for line in re.findall(r"^\s*(\.venv/bin/python manage\.py \S+.*)$", readme, flags=re.M)
               if line.split()[2] == name]
    return re.sub(r"\s+#\s.*$", "", line).split()[2:]


@pytest.mark.browser
@pytest.mark.skipif(not redis_reachable(), reason=f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}")
def test_readme_steps_serve_the_pages_in_a_browser(wheel, database, tmp_path, browser):
    """The README's steps as written, in a `startproject` project, then a real browser: an anonymous
    user lands on a working log-in page, staff see the dashboard live, and an admin edit in one
    page shows as the live notice on another admin page."""
    home = virtualenv(wheel, "redis,daphne")
    python, env = readme_project(home, tmp_path, database, f"newuser{uuid.uuid4().hex[:8]}")
    run(python, "manage.py", "makemigrations", "shop", cwd=tmp_path, env=env)
    run(python, "manage.py", "migrate", cwd=tmp_path, env=env)
    checked = run(python, "manage.py", "check", cwd=tmp_path, env=env)
    assert "pgnotify_chat.W001" not in checked.stdout + checked.stderr  # the README routes the chat
    run(python, "manage.py", "shell", "--no-imports", "-c",
        "from django.contrib.auth.models import User; from shop.models import Order; "
        "User.objects.create_superuser('staff', 'staff@example.com', 'staff-password-1'); "
        "Order.objects.create(pk=9007199254740993, total='12345678901234567890.0123456789')",
        cwd=tmp_path, env=env)

    port = free_port()
    server = ManagedProcess(*readme_command("runserver"), "--noreload", f"127.0.0.1:{port}", python=python,
                            cwd=tmp_path, env={**env, "PYTHONUNBUFFERED": "1"})
    listener = listen(python, tmp_path, env)
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_for_line("development server at", timeout=30)
        anonymous = browser.new_context()
        anonymous.set_default_timeout(15_000)
        page = anonymous.new_page()
        response = page.goto(f"{url}/dashboard/")
        assert response.status == 200, f"{page.url} answered {response.status}: {server.stderr_lines[-20:]}"
        assert page.locator("input[type=password]").count() == 1, f"{page.url} is no log-in page"
        page.fill("input[name=username]", "staff")
        page.fill("input[name=password]", "staff-password-1")
        with page.expect_navigation():
            page.click("[type=submit]")
        assert page.url == f"{url}/dashboard/", page.url
        page.wait_for_function("window.websocketConnected === true", timeout=10_000)

        # Two admin pages of the same staff user: an edit saved in one appears as a notice in the other.
        elsewhere = anonymous.new_page()
        elsewhere.goto(f"{url}/admin/")
        elsewhere.wait_for_function("window.websocketConnected === true", timeout=10_000)
        editor = anonymous.new_page()
        editor.goto(f"{url}/admin/shop/order/9007199254740993/change/")
        editor.fill("input[name=status]", "paid")
        with editor.expect_navigation():
            editor.click("input[name=_save]")
        notice = elsewhere.locator("#pgnotify-notice .item").filter(has_text="UPDATE shop_order")
        notice.wait_for(timeout=10_000)
        assert notice.first.inner_text() == "UPDATE shop_order pk=9007199254740993 · status"
        feed = page.locator("#feed-body tr").filter(has_text="shop_order")
        feed.first.wait_for(timeout=10_000)
        assert "9007199254740993" in feed.first.inner_text()

        # The chat, installed and routed as the README says: its page and its websocket.
        chat = anonymous.new_page()
        chat.goto(f"{url}/chat/lobby/")
        chat.wait_for_function("window.websocketConnected === true", timeout=10_000)
        anonymous.close()
    finally:
        listener.stop()
        server.stop()
    failed = [line for line in server.stderr_lines if re.match(r"HTTP \S+ (?!/favicon.ico)\S+ [45]\d\d ", line)]
    assert failed == []  # no page, script or style sheet answered an error
