"""Password checks that missed the cache, fairly shared between clients.

A bcrypt check costs tens to hundreds of milliseconds of CPU on purpose. With one queue for
everyone (the toolkit's bcryptMtx, and dbhealth before this), 250 threads guessing passwords
kept a legitimate user's first scrape waiting 24 s, far past any scrape timeout. Here:

- checks run one at a time, in one thread (`dbhealth-bcrypt`, alive while there is work), so
  guessing never costs more than one core;
- each client (an IPv4 address, or an IPv6 /64, since one host usually holds a whole /64) has
  its own queue, and the thread takes one check from each client in turn: a client that asks
  for its first check waits for at most one check of every other client that is waiting, however
  many requests those clients have sent;
- a client has at most MAX_WAITING_PER_CLIENT checks waiting; a request beyond that is answered
  "no" at once, without a check and without waiting behind anyone (it was guessing, or it is
  sharing an address with a client that is: nothing tells the two apart before the check).

Callers get a concurrent.futures.Future: threads wait on result(), the event loop awaits it
(asyncio.wrap_future) without holding a thread while it waits.
"""

import ipaddress
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future

MAX_WAITING_PER_CLIENT = 4
IPV6_CLIENT_PREFIX = 64

Verify = Callable[[bytes, bytes], bool]


def client_key(address: str) -> str:
    """Who a request comes from, for fairness: the address, an IPv6 one cut to its /64."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # a Unix socket or a test client: one client
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))
    return str(parsed)


class FairChecks:
    """One check at a time, taken from each client's queue in turn (see the module's text)."""

    def __init__(self, verify: Verify) -> None:
        self._verify = verify
        self._lock = threading.Lock()
        # Client -> its waiting checks; the order is the turn: a served client goes to the end.
        self._waiting: OrderedDict[str, deque[tuple[Future, bytes, bytes]]] = OrderedDict()
        self._running = False

    def submit(self, client: str, password: bytes, hashed: bytes) -> Future:
        """A future for `verify(password, hashed)`; already False when `client` has too many
        checks waiting."""
        future: Future = Future()
        with self._lock:
            queue = self._waiting.setdefault(client, deque())
            if len(queue) >= MAX_WAITING_PER_CLIENT:
                future.set_result(False)
                return future
            queue.append((future, password, hashed))
            start = not self._running
            self._running = True
        if start:
            try:
                threading.Thread(target=self._run, name="dbhealth-bcrypt", daemon=True).start()
            except RuntimeError:  # no thread to be had: check in this one rather than never
                self._run()
        return future

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._running = False
                    return
                client, queue = next(iter(self._waiting.items()))
                future, password, hashed = queue.popleft()
                if queue:
                    self._waiting.move_to_end(client)
                else:
                    del self._waiting[client]
            try:
                matches = self._verify(password, hashed)
            except ValueError:  # a password over bcrypt's 72 bytes: never any user's
                matches = False
            except Exception as exc:  # never leave a waiter without an answer
                future.set_exception(exc)
                continue
            future.set_result(matches)
