"""The protocol's names: the frame types of the dashboard (docs/web.md) and of the live streams
(docs/live.md), and the dashboard's group and frame format, shared by the listener's
DashboardSender (which sends frames) and the web processes' fan-out (which writes them to
browsers). Frames are serialised once, by the sender, and travel through the channel layer as
ready-made text, numbers with all their digits (pgnotify.listener.exactjson)."""

from ..listener import exactjson

# The dashboard's frames, from the listener (through the group) to browsers and live streams.
CHANGES, CHECKPOINT, STATS, NOTICE = "changes", "checkpoint", "stats", "notice"
# The live streams' frames: the client's, then the server's.
SUBSCRIBE, UNSUBSCRIBE = "subscribe", "unsubscribe"
SNAPSHOT, CHANGE, RESYNC, ERROR = "snapshot", "change", "resync", "error"

DASHBOARD_GROUP = "pgnotify.dashboard"
FRAME_TYPE = "dashboard.frame"  # a group message whose "text" is a serialised websocket frame
CHANGES_PREFIX, CHANGES_SUFFIX = f'{{"type":"{CHANGES}","events":[', "]}"  # as frame() writes a changes frame


def frame(payload: dict) -> dict:
    """A group message carrying one ready-made websocket text frame (serialised once, not per client)."""
    return {"type": FRAME_TYPE, "text": exactjson.dumps(payload)}


def notice_frame(notice: dict) -> dict:
    """A listener state notice as a dashboard frame; the notice's own type becomes `kind`."""
    return frame({**notice, "type": NOTICE, "kind": notice.get("type")})
