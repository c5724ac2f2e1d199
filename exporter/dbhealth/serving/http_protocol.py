"""uvicorn's h11 protocol, guarded so that no client, without credentials, keeps scrapes away.

Anyone who can open a TCP connection to the service can try to take its connection slots
(server.MAX_CONNECTIONS): connect and send nothing, trickle a request head, announce a large
body and send it a byte at a time, keep a connection alive after a cheap request, or do any of
these over and over. Plain uvicorn bounds none of it (no deadline on a head or body, 75 s
keep-alive, every request over its limit answered 503, TLS handshakes outside the limit for
asyncio's 60 s). Here each connection is in one of these states, kept in a ConnectionTable:

- waiting: a TLS handshake, no byte of a request yet, or kept alive between requests;
- receiving: part of a request has come;
- answering: the whole request is in and the application runs it (never closed by this module).

and the defences are:

- a deadline on the whole request (DBHEALTH_REQUEST_HEAD_TIMEOUT, default 10 s): TLS handshake,
  head and body, counted from the connection (or from the first byte of the next request on a
  kept-alive connection); Go's net/http calls this ReadTimeout;
- no request bodies: no endpoint takes one, so a request announcing one (Content-Length above 0,
  or any Transfer-Encoding) is answered 413 and its connection closed before a byte of it is
  read;
- a client that stops reading a response it asked for has the same deadline to read again, and
  one may send at most MAX_PIPELINED_BYTES of requests ahead of their answers (uvicorn would
  read on and keep any amount in memory);
- an idle timeout between requests: KEEP_ALIVE_SECONDS while the service is quiet, and only
  BUSY_KEEP_ALIVE_SECONDS once open connections reach half the limit;
- at the limit, a new connection is made room for: the connection waiting longest is closed
  (then the one receiving longest), never one being answered; only when every connection is
  being answered is the new one closed as soon as it is accepted (which keeps the limit a hard
  bound on the descriptors clients hold, see server.client_connection_limit);
- a share per client address (DBHEALTH_CONNECTIONS_PER_CLIENT): a client at its share makes
  room among its own connections only, so a flood from one address never closes another
  address's connections (such as Prometheus's kept-alive one);
- TLS is started here rather than by asyncio's server, so a handshake counts against the limit
  and runs under the request deadline, and its buffers are small (TLS_READ_BUFFER_BYTES, not
  asyncio's 256 KiB) and returned when it ends (see heap.py).

Closing for room and refusing log WARNING lines through throttle.py: one line per reason per
minute, however large the flood.
"""

import asyncio
import ipaddress
import logging
import ssl
from asyncio import sslproto
from collections import Counter
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

from dbhealth.serving import heap

logger = logging.getLogger(__name__)

# A scrape's head arrives in one packet; ten seconds allow for a very slow link (and a handshake).
REQUEST_HEAD_TIMEOUT_SECONDS = 10.0
# Longer than Prometheus's default scrape interval (1 m): the connection one scrape used is still
# open for the next, so the server never closes it just as Prometheus reuses it.
KEEP_ALIVE_SECONDS = 75.0
# Once busy, a kept-alive connection gives its slot back soon: Prometheus reconnects for its
# next scrape at the cost of one TCP (and TLS) handshake.
BUSY_KEEP_ALIVE_SECONDS = 5.0
BUSY_SHARE = 0.5
# Bytes read from a TLS connection at once: one TLS record (16 KiB) and its overhead. Requests
# are small; asyncio's default, 256 KiB, is allocated and zeroed for every connection accepted.
TLS_READ_BUFFER_BYTES = 17 * 1024
# Requests a client may send ahead of the answers to its earlier ones.
MAX_PIPELINED_BYTES = 64 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    connections: int  # client connections open at most
    per_client: int  # of which one client address may hold
    request_timeout: float = REQUEST_HEAD_TIMEOUT_SECONDS
    idle_timeout: float = KEEP_ALIVE_SECONDS
    busy_idle_timeout: float = BUSY_KEEP_ALIVE_SECONDS


class ConnectionTable:
    """Every client connection of one server, by state, oldest first (runs on the event loop)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: set[GuardedProtocol] = set()
        # Dictionaries keep insertion order: the first key is the one in that state longest.
        self.waiting: dict[GuardedProtocol, None] = {}
        self.receiving: dict[GuardedProtocol, None] = {}
        self.per_client: Counter[str] = Counter()

    def busy(self) -> bool:
        return len(self.open) >= self.limits.connections * BUSY_SHARE

    def admit(self, connection: "GuardedProtocol") -> bool:
        """Make room for a new connection by closing others; False when there is none to close."""
        client = connection.client_address
        if self.per_client[client] >= self.limits.per_client:
            victim = self._oldest(client)
            if victim is None:
                logger.warning(
                    "client connections: refused one from %s, which holds its share of %d "
                    "connections (DBHEALTH_CONNECTIONS_PER_CLIENT), every one in a request",
                    client,
                    self.limits.per_client,
                )
                return False
            logger.warning(
                "client connections: closed the oldest idle connection of %s, which holds its "
                "share of %d (DBHEALTH_CONNECTIONS_PER_CLIENT), to make room for its new one",
                client,
                self.limits.per_client,
            )
            victim.close_connection()
        if len(self.open) >= self.limits.connections:
            victim = self._oldest(None)
            if victim is None:
                logger.warning(
                    "client connections: refused one from %s: all %d connections are in a request",
                    client,
                    self.limits.connections,
                )
                return False
            logger.warning(
                "client connections: the limit of %d is reached: closed the oldest idle one "
                "(from %s) to make room for a new one",
                self.limits.connections,
                victim.client_address,
            )
            victim.close_connection()
        self.open.add(connection)
        self.per_client[client] += 1
        self.waiting[connection] = None
        return True

    def _oldest(self, client: str | None) -> "GuardedProtocol | None":
        """The connection waiting longest (of `client`, when given), else the one receiving
        longest; None when every one is being answered."""
        for state in (self.waiting, self.receiving):
            for connection in state:
                if client is None or connection.client_address == client:
                    return connection
        return None

    def set_waiting(self, connection: "GuardedProtocol") -> None:
        if connection in self.open:
            self.receiving.pop(connection, None)
            self.waiting.pop(connection, None)
            self.waiting[connection] = None

    def set_receiving(self, connection: "GuardedProtocol") -> None:
        if connection in self.open and connection not in self.receiving:
            self.waiting.pop(connection, None)
            self.receiving[connection] = None

    def set_answering(self, connection: "GuardedProtocol") -> None:
        self.waiting.pop(connection, None)
        self.receiving.pop(connection, None)

    def release(self, connection: "GuardedProtocol") -> None:
        if connection in self.open:
            self.open.discard(connection)
            self.set_answering(connection)
            self.per_client[connection.client_address] -= 1
            if not self.per_client[connection.client_address]:
                del self.per_client[connection.client_address]


class BodylessConnection(h11.Connection):
    """h11's server side, which stops at a request that announces a body: next_event() gives
    PAUSED instead of the request (so uvicorn runs nothing and reads no further) and
    `refused_body` is set for the protocol to answer 413."""

    refused_body = False

    def next_event(self):
        if self.refused_body:
            return h11.PAUSED
        event = super().next_event()
        if isinstance(event, h11.Request) and announces_body(event):
            self.refused_body = True
            return h11.PAUSED
        return event


def announces_body(request: h11.Request) -> bool:
    for name, value in request.headers:  # names come lower-cased from h11
        if name == b"transfer-encoding" or (name == b"content-length" and int(value) > 0):
            return True
    return False


class SmallBufferTLS(sslproto.SSLProtocol):
    """asyncio's TLS protocol reading TLS_READ_BUFFER_BYTES at a time."""

    max_size = TLS_READ_BUFFER_BYTES


class GuardedProtocol(H11Protocol):
    """H11Protocol under a ConnectionTable and a request deadline, refusing request bodies and
    doing its own TLS handshake when the server has TLS (see the module's docstring)."""

    # Set per server by guarded_protocol().
    table: ConnectionTable
    tls_context: ssl.SSLContext | None = None

    client_address = ""
    _tcp: asyncio.Transport | None = None  # the TCP connection (under TLS, if any)
    _deadline: asyncio.TimerHandle | None = None
    _write_deadline: asyncio.TimerHandle | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        max_event = self.config.h11_max_incomplete_event_size
        if max_event is None:
            self.conn = BodylessConnection(h11.SERVER)
        else:
            self.conn = BodylessConnection(h11.SERVER, max_incomplete_event_size=max_event)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._tcp is not None:  # the TLS handshake is done: the TLS transport
            super().connection_made(transport)
            return
        self._tcp = transport
        self.client_address = client_address(transport)
        if self.tls_context is None:
            super().connection_made(transport)
        if not self.table.admit(self):
            transport.close()
            return
        self._arm_deadline()
        if self.tls_context is not None:
            self._start_tls(transport)

    def _start_tls(self, transport: asyncio.Transport) -> None:
        """Hand the TCP connection to a TLS protocol that calls connection_made again with the
        TLS transport once the handshake succeeds; `_handshake_ended` learns how it ended."""
        ended = self.loop.create_future()
        ended.add_done_callback(self._handshake_ended)
        tls = SmallBufferTLS(
            self.loop,
            self,
            self.tls_context,
            ended,
            server_side=True,
            ssl_handshake_timeout=self.table.limits.request_timeout,
            ssl_shutdown_timeout=self.table.limits.request_timeout,
        )
        transport.set_protocol(tls)
        tls.connection_made(transport)

    def _handshake_ended(self, ended: asyncio.Future) -> None:
        failed = ended.cancelled() or ended.exception() is not None
        if failed or self.transport is None:
            # The TLS protocol never tells its application of a connection lost before the
            # handshake completed: this is where such a connection leaves the table.
            self._forget()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is not h11.IDLE and self._pipelined_too_far(data):
            return
        if self.conn.their_state is h11.IDLE:
            # Bytes of a request: from the first of a kept-alive connection's next request, it
            # has the request deadline to come whole.
            self._arm_deadline()
            self.table.set_receiving(self)
        super().data_received(data)

    def _pipelined_too_far(self, data: bytes) -> bool:
        """Requests sent ahead of their answers are kept in memory until their turn (uvicorn reads
        on whenever a request is answered), so a client could pile up any amount: past
        MAX_PIPELINED_BYTES its connection is closed. Clients rarely pipeline at all."""
        if len(self.conn.trailing_data[0]) + len(data) <= MAX_PIPELINED_BYTES:
            return False
        logger.warning(
            "closed a connection from %s that sent over %d bytes of requests ahead of answers",
            self.client_address,
            MAX_PIPELINED_BYTES,
        )
        self.close_connection()
        return True

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if self.conn.refused_body:
            self._refuse_body()
        elif state is h11.IDLE:
            if self.conn.trailing_data[0]:  # part of a pipelined head, left from before
                self._arm_deadline()
                self.table.set_receiving(self)
        elif state is not h11.SEND_BODY:  # the whole request is in (or the connection is done)
            self._cancel_deadline()
            self.table.set_answering(self)

    def _refuse_body(self) -> None:
        if self.transport.is_closing():
            return
        logger.warning(
            "refused a request announcing a body from %s with 413 (no endpoint takes one)",
            self.client_address,
        )
        body = b"request bodies are not accepted\n"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        response = h11.Response(status_code=413, headers=headers, reason=STATUS_PHRASES[413])
        for event in (response, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def on_response_complete(self) -> None:
        # Closing too (a TLS connection waits for the client's close_notify): room to be made.
        self.table.set_waiting(self)
        if not self.transport.is_closing():
            limits = self.table.limits
            busy = self.table.busy()
            self.timeout_keep_alive = limits.busy_idle_timeout if busy else limits.idle_timeout
        super().on_response_complete()

    def pause_writing(self) -> None:
        # The client stopped reading a response: it has the request deadline to start again,
        # else it would keep its slot (a connection being answered is never closed for room).
        super().pause_writing()
        if self._write_deadline is None:
            timeout = self.table.limits.request_timeout
            self._write_deadline = self.loop.call_later(timeout, self._write_stalled)

    def _write_stalled(self) -> None:
        self._write_deadline = None
        logger.warning(
            "closed a connection from %s that stopped reading its answer for %g s",
            self.client_address,
            self.table.limits.request_timeout,
        )
        self.close_connection()

    def resume_writing(self) -> None:
        self._cancel_write_deadline()
        super().resume_writing()

    def _cancel_write_deadline(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def timeout_keep_alive_handler(self) -> None:
        # The TCP connection, not TLS's: a client that never answers close_notify would keep
        # its slot for the TLS shutdown timeout.
        self.close_connection()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        # uvicorn cancels the keep-alive timer only for a clean close: a TLS connection lost with
        # an error (no close_notify) would stay in memory, held by its timer, for 75 s.
        self._unset_keepalive_if_required()
        if self.transport is not None:  # else the TCP connection was closed before TLS began
            super().connection_lost(exc)

    def close_connection(self) -> None:
        """Close the connection at once (to make room, or past a deadline), dropping anything not
        yet sent: close() would wait for a client that does not read to take it first, keeping
        the descriptor (and, under TLS, skipping close_notify is no loss to such a client)."""
        self._forget()
        if self._tcp is not None:
            self._tcp.abort()

    def _forget(self) -> None:
        self._cancel_deadline()
        self._cancel_write_deadline()
        if self in self.table.open:
            self.table.release(self)
            heap.release_soon(self.loop)

    def _arm_deadline(self) -> None:
        if self._deadline is None:
            timeout = self.table.limits.request_timeout
            self._deadline = self.loop.call_later(timeout, self._deadline_passed)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):  # handshake, head or body
            self.close_connection()


def client_address(transport: asyncio.BaseTransport) -> str:
    """The peer's IP address (an IPv4-mapped IPv6 address as IPv4): what the share counts by."""
    peer = transport.get_extra_info("peername")
    if not peer:
        return ""
    host = peer[0] if isinstance(peer, tuple) else str(peer)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def guarded_protocol(
    limits: ConnectionLimits, tls_context: ssl.SSLContext | None = None
) -> type[GuardedProtocol]:
    """The protocol class for uvicorn.Config(http=...): one ConnectionTable for the server."""
    attributes = {"table": ConnectionTable(limits), "tls_context": tls_context}
    return type("GuardedProtocol", (GuardedProtocol,), attributes)
