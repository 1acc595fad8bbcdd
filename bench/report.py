"""bench/results.md: every target beside its measured value, with the machine and the date."""

TARGETS = [
    ("listener_vs_raw_ratio", "≥ 0.8",
     "events/s through the listener ÷ bare psycopg loop, medians of alternating rounds "
     "({listener_events_per_s} ÷ {raw_loop_events_per_s})"),
    ("replay_events_per_s", "≥ 20,000", "catch-up from the event log after an outage"),
    ("write_overhead_1_writer", "≤ 0.20",
     "1 − watched/unwatched INSERT tps on the same table, 1 writer, medians of alternating rounds "
     "({watched_insert_tps_1_writers} vs {plain_insert_tps_1_writers})"),
    ("write_overhead_8_writers", "report",
     "the same, 8 writers ({watched_insert_tps_8_writers} vs {plain_insert_tps_8_writers})"),
    ("write_overhead_update_1_writer", "report",
     "the same for an UPDATE of one random row of a filled table, 1 writer "
     "({watched_update_tps_1_writer} vs {plain_update_tps_1_writer})"),
    ("write_overhead_delete_1_writer", "report",
     "the same for a DELETE of one row, 1 writer ({watched_delete_tps_1_writer} vs {plain_delete_tps_1_writer})"),
    ("bulk_update_ratio", "≤ 2.0", "UPDATE of {bulk_update_rows} rows of the same table, watched ÷ unwatched time "
     "({bulk_update_watched_s} s vs {bulk_update_plain_s} s)"),
    ("e2e_p50_ms", "≤ 5", "commit → dashboard frame, Redis layer, {e2e_rate}/s, {e2e_clients} dashboards "
     "({e2e_delivered_ratio} of events delivered within 10 s; from the trigger's `ts`, before the commit: "
     "{e2e_p50_from_trigger_ms} ms; floor, a bare NOTIFY round trip in the same run: "
     "{notify_round_trip_p50_ms} ms)"),
    ("e2e_p99_ms", "≤ 10", "the same, p99 (from `ts`: {e2e_p99_from_trigger_ms} ms; bare NOTIFY round trip p99: "
     "{notify_round_trip_p99_ms} ms)"),
    ("e2e_postgres_layer_p50_ms", "report",
     "the same on the channels_postgres layer ({e2e_postgres_layer_delivered_ratio} delivered)"),
    ("e2e_postgres_layer_p99_ms", "report", "the same, p99"),
    ("idle_e2e_p50_ms", "≤ 2", "10 changes/s, one dashboard, Redis layer (p99 {idle_e2e_p99_ms} ms; "
     "p50 from `ts` {idle_e2e_p50_from_trigger_ms} ms)"),
    ("fanout_delivered_ratio", "≥ 0.999", "{fanout_clients} dashboards, {fanout_rate} changes/s for "
     "{fanout_seconds} s, Redis layer: events received within 10 s of the last write ÷ sent"),
    ("fanout_p99_ms", "≤ 250", "the same, p99 latency of the events received (p50 {fanout_p50_ms} ms)"),
    ("fanout_2_procs_delivered_ratio", "≥ 0.999", "{fanout_2_procs_clients} dashboards spread evenly over "
     "{fanout_2_procs_servers} daphne processes (one listener), {fanout_2_procs_rate} changes/s for "
     "{fanout_2_procs_seconds} s, Redis layer: events received within 10 s of the last write ÷ sent"),
    ("fanout_2_procs_p99_ms", "≤ 100",
     "the same, p99 latency of the events received, timed at every 10th dashboard (p50 {fanout_2_procs_p50_ms} ms; "
     "daphne CPU {fanout_2_procs_daphne_cores} cores, the clients' {fanout_2_procs_client_cores})"),
    ("channels_postgres_alone_vs_pgnotify_p50", "report",
     "peer: INSERT then group_send by hand on upstream channels_postgres, p50 ÷ pgnotify's on the postgres "
     "layer, {peer_rate}/s, {peer_clients} dashboards ({channels_postgres_alone_p50_ms} vs "
     "{pgnotify_postgres_peer_point_p50_ms} ms; delivered {channels_postgres_alone_delivered_ratio} vs "
     "{pgnotify_postgres_peer_point_delivered_ratio})"),
    # The WAL source (docs/sources.md), measured in the same run.
    ("write_overhead_1_writer_wal", "≤ 0.05",
     "WAL source: 1 − published/unpublished INSERT tps, 1 writer, a slot present, its consumer paused "
     "({watched_insert_tps_1_writers_wal} vs {plain_insert_tps_1_writers_wal})"),
    ("write_overhead_8_writers_wal", "≤ 0.10",
     "the same, 8 writers ({watched_insert_tps_8_writers_wal} vs {plain_insert_tps_8_writers_wal})"),
    ("write_overhead_8_writers_wal_live", "report",
     "the same with `listen_notify` consuming live on these 2 cores ({watched_insert_tps_8_writers_wal_live} vs "
     "{plain_insert_tps_8_writers_wal_live})"),
    ("wal_vs_notify_8_writers_tps", "≥ 2.5",
     "watched INSERT tps, 8 writers, each source's listener live: WAL ÷ NOTIFY "
     "({watched_insert_tps_8_writers_wal_live} ÷ {watched_insert_tps_8_writers_notify_live})"),
    ("wal_listener_cpu_quiet_tables", "report",
     "cores the WAL `listen_notify` uses while 8 writers insert only into an unpublished table "
     "({plain_insert_tps_8_writers_wal_live}/s): it reads the server's keepalives, one per commit anywhere"),
    ("bulk_update_ratio_wal", "≤ 1.5", "UPDATE of {bulk_update_rows} rows, replica identity FULL and published ÷ "
     "unpublished ({bulk_update_watched_s_wal} s vs {bulk_update_plain_s_wal} s)"),
    ("e2e_p50_ms_wal", "≤ 5", "commit → dashboard frame with the WAL source, Redis layer, {e2e_rate}/s, "
     "{e2e_clients} dashboards ({e2e_delivered_ratio_wal} delivered within 10 s)"),
    ("e2e_p99_ms_wal", "≤ 10", "the same, p99"),
    ("wal_listener_events_per_s", "≥ 100,000",
     "decoded into a no-op sink, medians of alternating rounds (bare replication stream, no decoding: "
     "{wal_raw_stream_events_per_s}/s)"),
    ("wal_catch_up_events_per_s", "≥ 50,000", "from the listener's start after a {bulk_update_rows}-change outage"),
    # Live streams (docs/live.md): the demo's `my-orders`, 2 daphne processes, Redis layer, one listener.
    ("live_subscribers_p99_ms", "≤ 50",
     "commit → `change` frame, {live_subscriptions} of {live_subscriptions_wanted} subscriptions live (two tabs "
     "per user, each user's own rows), {live_rate} changes/s for {live_seconds} s spread over the users "
     "(achieved {live_achieved_rate}/s; p50 {live_subscribers_p50_ms} ms, max {live_subscribers_max_ms} ms)"),
    ("live_delivered_ratio", "≥ 0.999", "the same: frames received within 10 s of the last write ÷ rows × tabs"),
    ("live_wrong_user_deliveries", "0", "the same and the smaller run: change frames of a row that is not the "
     "user's"),
    ("live_cost_ratio", "≤ 1.5",
     "daphne CPU per change with {live_subscriptions} subscriptions ÷ with {live_small_subscriptions}, same rate "
     "({live_cpu_ms_per_change} vs {live_small_cpu_ms_per_change} ms; idle {live_idle_cores} vs "
     "{live_small_idle_cores} cores, the rights re-check of every socket; less the idle CPU: "
     "{live_marginal_cost_ratio})"),
    ("live_snapshot_rows_per_s", "report",
     "one user's {live_snapshot_rows}-row snapshot: socket opened → last snapshot page (the view is live) in "
     "{live_snapshot_ms} ms (first page {live_snapshot_first_page_ms} ms), medians of 3"),
    # The chat (pgnotify.contrib.chat): one room, a socket per user, 2 daphne processes, Redis layer.
    ("chat_p99_ms", "≤ 50", "commit → `chat.message` frame at every socket of a room of {chat_users} users (one "
     "socket each, 2 daphne processes, the room's per-process fan-out), {chat_rate} messages/s for {chat_seconds} s "
     "(p50 {chat_p50_ms} ms, max {chat_max_ms} ms)"),
    ("chat_delivered_ratio", "≥ 0.999", "the same: frames received within 10 s of the last message ÷ messages × "
     "sockets"),
    ("pgpubsub_vs_pgnotify_throughput", "report",
     "peer: django-pgpubsub listener events/s ÷ pgnotify's listener ({pgpubsub_events_per_s} ÷ "
     "{listener_events_per_s})"),
]


class _Missing(dict):
    def __missing__(self, key):
        return "—"


def _value(value) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def markdown(results: dict, measured_only: bool = False) -> str:
    """The table of TARGETS; with `measured_only`, only the rows this run measured (one part)."""
    shown = _Missing({key: _value(value) for key, value in results.items()})
    for key, (low, _, high) in results.get("spread", {}).items():  # --repeat: the median, then the range
        shown[key] = f"{_value(results[key])} ({_value(low)}–{_value(high)})"
    repeat = results.get("repeat", 1)
    lines = [f"Measured {results['date']} on {results['machine']} with `make bench`"
             + (f", medians of {repeat} runs (min–max)." if repeat > 1 else "."),
             f"Machine speed at the start: fixed CPU workload {shown['cpu_workload_ms']} ms, bare LISTEN loop "
             f"{shown['bare_listen_loop_events_per_s']} events/s.", "",
             "| figure | target | measured | what |", "|---|---|---|---|"]
    for key, target, what in TARGETS:
        if measured_only and key not in results:
            continue
        lines.append(f"| `{key}` | {target} | {shown[key]} | {what.format_map(shown)} |")
    for key in sorted(k for k in results if k.startswith("skipped_")):
        lines.append(f"\n{key.removeprefix('skipped_')} not measured: {results[key]}")
    return "\n".join(lines) + "\n"
