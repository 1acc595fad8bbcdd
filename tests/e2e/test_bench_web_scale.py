"""bench/chat.py and bench/fanout.py (the `make bench` chat and fanout_2_procs rows) do not rot:
their smallest runs end by themselves with every figure, every frame delivered, and leave no
process behind."""

import psutil
import pytest

from bench import chat, fanout, stack

pytestmark = [pytest.mark.once, pytest.mark.slow]


def test_smallest_chat_bench_times_every_message_at_every_socket(bench_database):
    results = chat.chat_figures(bench_database, quick=True, users=12, seconds=2)
    assert results["chat_users"] == 12 and results["chat_messages"] == 40  # 20/s for 2 s
    assert results["chat_delivered_ratio"] == 1.0
    assert 0 < results["chat_p50_ms"] <= results["chat_p99_ms"] <= results["chat_max_ms"]
    assert not psutil.Process().children(recursive=True)


def test_smallest_fanout_2_procs_bench_counts_every_dashboard(bench_database):
    stack.create_staff_user(stack.stack_env(bench_database, "postgres"))
    results = fanout.fanout_2_procs(bench_database, quick=True, size=(40, 2))
    point = results["fanout_2_procs_point"]
    assert point["clients"] == 40 and point["servers"] == 2 and point["written"] > 0
    assert results["fanout_2_procs_delivered_ratio"] == 1.0
    assert 0 < results["fanout_2_procs_p50_ms"] <= results["fanout_2_procs_p99_ms"]
    assert point["daphne_cores"] > 0 and point["client_cores"] > 0
    assert not psutil.Process().children(recursive=True)
