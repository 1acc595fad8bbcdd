"""The web figures: e2e latency per channel layer across rates, idle latency and fan-out (on one
daphne process, then on 2: bench.fanout)."""

from bench.e2e import run_points
from bench.fanout import fanout_2_procs
from bench.stack import WebStack, redis_reachable

RATES = [10, 100, 500, 1000, 2000]
CLIENTS = 100
HEADLINE_RATE = 1000
PEER_RATE = 100  # where the trigger-free peer is compared: a rate both paths can carry


def sweep(database_url: str, layer: str, quick: bool) -> list[dict]:
    """Latency at each rate with CLIENTS dashboards; the headline rate runs longest."""
    seconds = lambda rate: (3 if quick else 10) if rate == HEADLINE_RATE else (2 if quick else 5)  # noqa: E731
    with WebStack(database_url, layer) as stack:
        return run_points(stack, database_url, [(rate, CLIENTS, seconds(rate)) for rate in RATES])


def idle_and_fanout(database_url: str, quick: bool) -> tuple[dict, dict]:
    fanout_seconds = 5 if quick else 30
    with WebStack(database_url, "redis") as stack:
        idle, fanout = run_points(stack, database_url, [(10, 1, 3 if quick else 10), (100, 500, fanout_seconds)])
    fanout["seconds"] = fanout_seconds
    return idle, fanout


def at(points: list[dict], rate: float) -> dict:
    return next(p for p in points if p["rate"] == rate)


def web_figures(database_url: str, quick: bool) -> dict:
    results, sweeps = {}, {}
    if redis_reachable():
        sweeps["redis"] = sweep(database_url, "redis", quick)
        headline = at(sweeps["redis"], HEADLINE_RATE)
        results.update(e2e_p50_ms=headline["p50_ms"], e2e_p99_ms=headline["p99_ms"],
                       e2e_p50_from_trigger_ms=headline["p50_from_trigger_ms"],
                       e2e_p99_from_trigger_ms=headline["p99_from_trigger_ms"],
                       e2e_delivered_ratio=headline["delivered_ratio"], e2e_rate=HEADLINE_RATE, e2e_clients=CLIENTS)
        idle, fanout = idle_and_fanout(database_url, quick)
        results.update(idle_e2e_p50_ms=idle["p50_ms"], idle_e2e_p99_ms=idle["p99_ms"],
                       idle_e2e_p50_from_trigger_ms=idle["p50_from_trigger_ms"],
                       fanout_delivered_ratio=fanout["delivered_ratio"], fanout_p50_ms=fanout["p50_ms"],
                       fanout_p99_ms=fanout["p99_ms"], fanout_clients=fanout["clients"],
                       fanout_rate=fanout["rate"], fanout_seconds=fanout["seconds"])
        results.update(fanout_2_procs(database_url, quick))
    else:
        results["skipped_redis"] = "Redis is not reachable at 127.0.0.1:6379"
    sweeps["postgres"] = sweep(database_url, "postgres", quick)
    headline = at(sweeps["postgres"], HEADLINE_RATE)
    results.update(e2e_postgres_layer_p50_ms=headline["p50_ms"], e2e_postgres_layer_p99_ms=headline["p99_ms"],
                   e2e_postgres_layer_delivered_ratio=headline["delivered_ratio"])
    peer_point = at(sweeps["postgres"], PEER_RATE)
    results.update(pgnotify_postgres_peer_point_p50_ms=peer_point["p50_ms"],
                   pgnotify_postgres_peer_point_delivered_ratio=peer_point["delivered_ratio"])
    results["sweep"] = sweeps
    return results
