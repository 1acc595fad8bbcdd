"""Peers measured the same way as pgnotify, in the same run."""

from bench.e2e import Source, run_points
from bench.stack import WebStack
from bench.web import CLIENTS, PEER_RATE

CHANNELS_POSTGRES_SETTINGS = "bench.settings_channels_postgres"


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


def peer_figures(e2e_url: str, results: dict, quick: bool) -> dict:
    figures = channels_postgres_alone(e2e_url, quick)
    figures["channels_postgres_alone_vs_pgnotify_p50"] = ratio(
        figures["channels_postgres_alone_p50_ms"], results.get("pgnotify_postgres_peer_point_p50_ms"))
    return figures
