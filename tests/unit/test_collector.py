"""The web processes' collector policy: a full collection freezes its survivors, so the next one
walks only newer objects; they go back to the collector (a thaw) once a quarter of the sockets
have closed, or every GC_THAW seconds, and frozen garbage is then freed."""

import asyncio
import gc
import weakref

import pytest
from django.test import override_settings

from pgnotify.web import collector


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Node:
    pass


@pytest.fixture
def policy():
    callback = collector.FreezeSurvivors(thaw_seconds=60, clock=Clock())
    gc.callbacks.append(callback)
    try:
        yield callback
    finally:
        gc.callbacks.remove(callback)
        gc.unfreeze()


def a_cycle() -> Node:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return first


def test_a_full_collection_freezes_its_survivors(policy):
    kept = a_cycle()
    gc.collect()
    assert gc.get_freeze_count() > 0
    assert not any(obj is kept for obj in gc.get_objects(generation=2))  # the next pass skips it


def test_young_collections_freeze_nothing(policy):
    gc.collect(1)
    assert gc.get_freeze_count() == 0


def test_frozen_garbage_waits_for_the_thaw_then_is_freed(policy):
    cycle = a_cycle()
    alive = weakref.ref(cycle)
    gc.collect()  # survives (still referenced), so it is frozen
    del cycle
    gc.collect()
    assert alive() is not None, "a frozen cycle is not collected before the thaw"
    policy.clock.now += 61
    gc.collect()  # this pass ends by thawing: everything is the collector's again
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None


def test_a_quarter_of_the_sockets_closed_thaws(policy):
    for _ in range(12):
        policy.opened()
    policy.closed_one()
    policy.closed_one()  # 2 closed, 10 open
    cycle = a_cycle()
    alive = weakref.ref(cycle)
    gc.collect()
    del cycle
    gc.collect()
    assert gc.get_freeze_count() > 0 and alive() is not None
    policy.closed_one()  # 3 closed since the last thaw, 9 open: more than a quarter
    gc.collect()
    assert gc.get_freeze_count() == 0 and policy.closed == 0
    gc.collect()
    assert alive() is None
    gc.collect()  # 0 closed since the thaw: survivors are frozen again
    assert gc.get_freeze_count() > 0


@pytest.mark.parametrize("freeze", [True, False])
def test_install_follows_the_setting_once(monkeypatch, freeze):
    monkeypatch.setattr(collector, "_policy", None)
    before = list(gc.callbacks)
    try:
        with override_settings(PGNOTIFY={"GC_FREEZE": freeze}):
            assert (collector.install() is not None) is freeze
            collector.socket_opened()
            collector.socket_opened()
            collector.socket_closed()
            assert collector.install() is collector._policy
        if freeze:
            assert (collector._policy.open, collector._policy.closed) == (1, 1)
        added = [callback for callback in gc.callbacks if callback not in before]
        assert len(added) == (1 if freeze else 0)
        assert all(isinstance(callback, collector.FreezeSurvivors) for callback in added)
    finally:
        gc.callbacks[:] = before
        gc.unfreeze()


def test_a_web_process_runs_a_full_pass_every_second(monkeypatch):
    monkeypatch.setattr(collector, "_policy", None)
    monkeypatch.setattr(collector, "COLLECT_INTERVAL", 0.05)
    before = list(gc.callbacks)
    full_passes = []
    three = asyncio.Event()

    def record(phase, info):
        if phase == "stop" and info["generation"] == 2:
            full_passes.append(info)
            if len(full_passes) == 3:
                three.set()

    async def with_a_socket_open():
        collector.socket_opened()
        await asyncio.wait_for(three.wait(), 5)
        assert gc.get_freeze_count() > 0  # each pass's survivors were frozen

    gc.callbacks.append(record)
    try:
        with override_settings(PGNOTIFY={"GC_FREEZE": True}):
            asyncio.run(with_a_socket_open())
    finally:
        gc.callbacks[:] = before
        gc.unfreeze()
