"""Peers measured the same way as pgnotify, in the same run."""

import json
import os
import subprocess
import sys

from bench.database import ROOT, with_database
from bench.e2e import Source, run_points
from bench.stack import WebStack
from bench.web import CLIENTS, PEER_RATE

CHANNELS_POSTGRES_SETTINGS = "bench.settings_channels_postgres"
PEER_VENV = ROOT / "bench" / ".venv-peers"
PGPUBSUB_DB = "pgnotify_bench_pgpubsub"


def peer_python() -> str:
    """bench/.venv-peers with the peers' pinned packages (kept apart from pgnotify's .venv)."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(ROOT / "bench" / "pgpubsub_peer" /
                    "requirements.txt")], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(python)


def pgpubsub_drain(server_url: str, count: int) -> float:
    """django-pgpubsub's listen loop on `count` notifications of its own post-insert trigger."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(PGPUBSUB_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PGPUBSUB_DB)))
    python = peer_python()
    env = {**os.environ, "DATABASE_URL": with_database(server_url, PGPUBSUB_DB),
           "DJANGO_SETTINGS_MODULE": "bench.pgpubsub_peer.settings", "PGPUBSUB_USE_PSYCOPG_V3": "True"}
    subprocess.run([python, "-m", "django", "migrate", "--run-syncdb", "-v", "0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([python, "-m", "bench.pgpubsub_peer.drain", str(count)], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=400).stdout
    return json.loads(out.strip().splitlines()[-1])["events_per_s"]


def channels_postgres_alone(database_url: str, quick: bool) -> dict:
    """Upstream channels_postgres as the only transport: the writer INSERTs a row into a table
    without triggers and group_sends its change event itself; daphne, no listener."""
    with WebStack(database_url, "postgres", listener=False, settings=CHANNELS_POSTGRES_SETTINGS) as stack:
        source = Source(table="bench_plain", writer="bench.peer_writer", env=stack.env)
        point = run_points(stack, database_url, [(PEER_RATE, CLIENTS, 2 if quick else 5)], source)[0]
    return {"channels_postgres_alone_p50_ms": point["p50_ms"], "channels_postgres_alone_p99_ms": point["p99_ms"],
            "channels_postgres_alone_delivered_ratio": point["delivered_ratio"],
            "channels_postgres_alone_achieved_rate": point["achieved_rate"], "peer_rate": PEER_RATE,
            "peer_clients": CLIENTS}


def ratio(numerator, denominator):
    return round(numerator / denominator, 3) if numerator and denominator else None


def peer_figures(server_url: str, e2e_url: str, results: dict, quick: bool) -> dict:
    figures = channels_postgres_alone(e2e_url, quick)
    figures["channels_postgres_alone_vs_pgnotify_p50"] = ratio(
        figures["channels_postgres_alone_p50_ms"], results.get("pgnotify_postgres_peer_point_p50_ms"))
    try:
        figures["pgpubsub_events_per_s"] = pgpubsub_drain(server_url, 5_000 if quick else 50_000)
    except (subprocess.SubprocessError, OSError, ValueError) as error:
        figures["skipped_django-pgpubsub"] = f"{type(error).__name__}: {str(error)[:200]}"
        print(f"django-pgpubsub skipped: {figures['skipped_django-pgpubsub']}", flush=True)
    figures["pgpubsub_vs_pgnotify_throughput"] = ratio(
        figures.get("pgpubsub_events_per_s"), results.get("listener_events_per_s"))
    return figures
