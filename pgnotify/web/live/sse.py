"""/live/<stream>/: one stream as Server-Sent Events, for clients that want no websocket.

GET /live/my-orders/?filter={"status":"paid"}: each frame is an SSE event whose `event:` is the
frame's type, `data:` the same JSON object as on /ws/live/ and `id:` its position (snapshot and
change frames); a reconnecting EventSource sends the last one as Last-Event-ID and resumes.
Rights are checked when the response starts (the request's session) and again every 2 s while it
lasts (pgnotify.web.rights): logged out, deactivated or a changed password ends the response; a
change of the user's rights reconciles the view. A comment line every KEEPALIVE seconds keeps
proxies from closing an idle response."""

import asyncio
import json

from channels.layers import get_channel_layer
from django.http import HttpResponse, StreamingHttpResponse

from ...listener import exactjson
from .. import collector, rights
from . import recheck
from .session import LiveSession
from .streams import Refused, get

KEEPALIVE = 15.0
SUB_ID = "sse"


async def stream_view(request, stream: str):
    user = await request.auser()
    try:
        declared = get(stream)
        if not (user.is_authenticated or declared.anonymous):
            return HttpResponse("log in to read this stream\n", status=403, content_type="text/plain")
        data = request.GET.get("filter")
        live_filter = json.loads(data) if data else None
        declared.filter(live_filter)
    except Refused as error:
        return HttpResponse(f"{error}\n", status=404 if "unknown stream" in str(error) else 400,
                            content_type="text/plain")
    except ValueError:
        return HttpResponse("filter must be JSON\n", status=400, content_type="text/plain")
    after = request.headers.get("Last-Event-ID") or request.GET.get("after") or None
    session = getattr(request, "session", None)
    response = StreamingHttpResponse(_events(user, session, stream, live_filter, after),
                                     content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events on at once
    return response


class Watched:
    """One SSE response as pgnotify.web.rights sees a websocket: a scope with the session and the
    user; `close` ends the response."""

    def __init__(self, user, session, queue: asyncio.Queue):
        self.scope = {"user": user, "session": session}
        self.queue = queue
        self.session: LiveSession | None = None

    async def close(self, code=None) -> None:
        await self.queue.put(None)

    @staticmethod
    async def refresh_rights(users: dict) -> None:
        await recheck.refresh({watched.session: user for watched, user in users.items() if watched.session is not None})


async def _events(user, http_session, stream, live_filter, after):
    queue: asyncio.Queue = asyncio.Queue()
    session = LiveSession(user, get_channel_layer(), queue.put)
    watched = Watched(user, http_session, queue)
    watched.session = session
    if user.is_authenticated:
        rights.watch(watched)
    subscribing = asyncio.ensure_future(session.subscribe(SUB_ID, stream, live_filter, after))
    collector.socket_opened()
    try:
        while True:
            try:
                frame = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if frame is None:  # the user lost the right to the stream
                return
            yield sse_event(frame)
    finally:
        collector.socket_closed()
        rights.unwatch(watched)
        subscribing.cancel()
        await asyncio.shield(session.close())


def sse_event(frame: dict) -> str:
    lines = [f"event: {frame['type']}"]
    if frame.get("position"):
        lines.append(f"id: {frame['position']}")
    lines.append(f"data: {exactjson.dumps(frame)}")
    return "\n".join(lines) + "\n\n"
