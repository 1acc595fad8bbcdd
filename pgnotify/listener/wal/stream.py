"""The replication connection: START_REPLICATION of a logical slot with pgoutput, read without
blocking, and standby status updates.

psycopg 3 has no replication API; its libpq layer is enough. The query is sent with
`send_query` (a replication connection speaks only the simple query protocol), and the stream is
read with `consume_input()` and the non-blocking `get_copy_data(1)` whenever the socket is
readable: the blocking form would hold the event loop (and the interpreter lock) while it waits.
"""

import psycopg
from psycopg import pq, sql

from ..receiving import readable
from .protocol import lsn_text, status_update

# Session settings of the walsender: pgoutput renders values with them (see values.py).
SESSION_OPTIONS = ("-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 -c extra_float_digits=1 "
                   "-c bytea_output=hex")
READ_BATCH = 5000  # messages taken per read at most, so a flood still lets the loop check its clocks


class ReplicationStream:
    def __init__(self, conn: psycopg.AsyncConnection):
        self.conn = conn
        self.pgconn = conn.pgconn
        self._failure: psycopg.OperationalError | None = None  # read after messages: raised next

    async def start(self, slot: str, publication: str, start_lsn: int) -> None:
        """START_REPLICATION; raises psycopg.OperationalError with the server's message (the caller
        bounds the wait)."""
        command = sql.SQL("START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names {})").format(
            sql.Identifier(slot), sql.SQL(lsn_text(start_lsn)), sql.Literal(publication)).as_bytes(self.conn)
        pgconn = self.pgconn
        pgconn.send_query(command)
        pgconn.flush()
        while pgconn.is_busy():
            await readable(1.0, pgconn.socket)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_BOTH:
            message = (result.error_message if result is not None else pgconn.error_message).decode(errors="replace")
            raise psycopg.OperationalError(message.strip() or "START_REPLICATION failed")

    def poll(self) -> list[bytes]:
        """The copy data messages that arrived (at most READ_BATCH), without waiting."""
        if self._failure is None:
            self.pgconn.consume_input()  # raises psycopg.OperationalError on a broken connection
        return self.take()

    def take(self) -> list[bytes]:
        """The messages already read; the stream's end or error once every message before it
        was taken (never in place of them)."""
        if (failure := self._failure) is not None:
            self._failure = None
            raise failure
        pgconn = self.pgconn
        messages: list[bytes] = []
        get = pgconn.get_copy_data
        while len(messages) < READ_BATCH:
            size, data = get(1)
            if size > 0:
                messages.append(bytes(data))
            elif size == 0:
                break
            else:  # -1: the server ended the stream; -2: an error
                result = pgconn.get_result()
                message = result.error_message.decode(errors="replace") if result is not None else ""
                failure = psycopg.OperationalError(message.strip() or pgconn.error_message.decode(errors="replace")
                                                   or "the replication stream ended")
                if not messages:
                    raise failure
                self._failure = failure
                break
        return messages

    def confirm(self, lsn: int, reply: bool = False) -> None:
        """Tell the server everything up to `lsn` is taken (and ask for a keepalive back)."""
        pgconn = self.pgconn
        if pgconn.put_copy_data(status_update(lsn, reply)) != 1 or pgconn.flush() < 0:
            raise psycopg.OperationalError(pgconn.error_message.decode(errors="replace") or "status update failed")
