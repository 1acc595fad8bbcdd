"""The rights re-check round in-process (pgnotify.web.rights.check_round): sessions checked in
chunks, and what it keeps between rounds (decoded sessions, password hashes, unchanged users)
never hides a lost right: a round after the change closes exactly the sockets that lost it."""

import asyncio

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session

from pgnotify.web import rights
from tests.helpers.live import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


class Socket:
    def __init__(self, name: str):
        pk, cookie = session_cookie(name)
        self.user = get_user_model().objects.get(pk=pk)
        self.key = cookie.split("=", 1)[1]
        self.scope = {"session": SessionStore(self.key), "user": self.user}
        self.closed = None
        self.fresh = None

    async def close(self, code=None):
        self.closed = code

    @staticmethod
    async def refresh_rights(users):
        for socket, user in users.items():
            socket.fresh = user


@pytest.mark.parametrize("row_versions", [True, False], ids=["xmin", "whole-rows"])
def test_a_round_after_a_change_closes_exactly_the_sockets_that_lost_the_right(monkeypatch, row_versions):
    monkeypatch.setattr(rights, "CHUNK", 2)  # several chunks of sessions
    # whole rows compared: as for a user model whose table has no row versions (a view)
    monkeypatch.setattr(rights, "_versioned", {} if row_versions else {get_user_model(): False})
    sockets = {name: Socket(name) for name in ["keeps", "renamed", "inactive", "password", "logout", "other"]}
    watched = dict.fromkeys(sockets.values(), False)
    asyncio.run(rights.check_round(watched))  # the caches fill
    assert len(watched) == 6 and all(socket.closed is None for socket in sockets.values())

    user_model = get_user_model()
    user_model.objects.filter(pk=sockets["renamed"].user.pk).update(first_name="Renamed")
    user_model.objects.filter(pk=sockets["inactive"].user.pk).update(is_active=False)
    changed = user_model.objects.get(pk=sockets["password"].user.pk)
    changed.set_password("another-password-1")
    changed.save()
    Session.objects.filter(session_key=sockets["logout"].key).delete()
    other = SessionStore(sockets["other"].key)  # the session now logs another user in
    other["_auth_user_id"] = str(sockets["keeps"].user.pk)
    other.save()

    asyncio.run(rights.check_round(watched))
    closed = {name for name, socket in sockets.items() if socket.closed == rights.FORBIDDEN}
    assert closed == {"inactive", "password", "logout", "other"}
    assert set(watched) == {sockets["keeps"], sockets["renamed"]}
    assert sockets["renamed"].fresh.first_name == "Renamed"  # a changed row: a fresh user


def test_a_round_is_spread_over_its_interval_a_chunk_at_a_time(monkeypatch):
    monkeypatch.setattr(rights, "CHUNK", 2)
    sockets = [Socket(name) for name in ["one", "two", "three", "four", "five"]]
    chunks = []

    class Recorded(Socket):
        @staticmethod
        async def refresh_rights(users):
            chunks.append((asyncio.get_running_loop().time(), len(users)))

    for socket in sockets:
        socket.__class__ = Recorded
    started = None

    async def round_over(seconds):
        nonlocal started
        started = asyncio.get_running_loop().time()
        await rights.check_round(dict.fromkeys(sockets, False), over=seconds)

    asyncio.run(round_over(0.6))
    assert [size for _, size in chunks] == [2, 2, 1]
    # 3 chunks over 0.6 s: each after a pause of about 0.2 s, not all at once
    gaps = [later - earlier for (earlier, _), (later, _) in zip([(started, 0), *chunks], chunks, strict=False)]
    assert all(gap >= 0.19 for gap in gaps), gaps
