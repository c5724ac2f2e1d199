"""uvicorn's h11 protocol with a deadline on the request head.

uvicorn arms no timer on a new connection, nor on a request head that arrives a byte at a time:
a client that connects and sends nothing, or trickles a header line every few seconds (a
"slowloris"), holds its connection for ever. Each such connection counts against the service's
connection limit (server.MAX_CONNECTIONS), past which every request, Prometheus's scrapes too,
is answered 503. With this deadline a client has DBHEALTH_REQUEST_HEAD_TIMEOUT seconds (default
REQUEST_HEAD_TIMEOUT_SECONDS) to send a whole request head, counted from the connection (or from
the first byte of the next request on a kept-alive connection); idle time between requests stays
governed by uvicorn's keep-alive timeout. Go's net/http calls this ReadHeaderTimeout.

A connection beyond the limit is closed as soon as it is accepted (uvicorn keeps it and answers
503 to its request), so client connections never hold more descriptors than the limit allows
(see server.client_connection_limit).
"""

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# A scrape's head arrives in one packet; ten seconds allow for a very slow link.
REQUEST_HEAD_TIMEOUT_SECONDS = 10.0


class HeadDeadlineProtocol(H11Protocol):
    """H11Protocol that closes a connection whose request head is not complete in time."""

    head_timeout = REQUEST_HEAD_TIMEOUT_SECONDS
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.limit_concurrency is not None and len(self.connections) > self.limit_concurrency:
            # Over the limit: give the descriptor back now. uvicorn would keep the connection
            # and answer 503 once a request head came, so a flood of connections that send
            # nothing would hold descriptors that database connections need.
            transport.close()
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        # Bytes of a new request on a kept-alive connection start its head's deadline.
        if self.conn.their_state is h11.IDLE:
            self._arm_head_timer()
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # the head is in (or the connection is done)
        elif self.conn.trailing_data[0]:
            self._arm_head_timer()  # part of a pipelined head, left when the last response ended

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def with_head_timeout(seconds: float) -> type[HeadDeadlineProtocol]:
    """The protocol class for uvicorn.Config(http=...), with this deadline."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout": seconds})
