"""The interface every vendor probe implements, in the manner of blackbox_exporter's probers.

A vendor probe only knows its SQL and its driver's quirks; opening connections, timing, deadlines
and bookkeeping are the prober's job (alias_prober.py). Every method runs in the probe thread
except `interrupt`, which the watchdog calls from its own thread when a deadline passes.
"""

import math
import os
import socket
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from dbhealth.probing.state import SERVER_FACTS, IdHeadroom, Observations, Statement


class StatementsUnavailable(Exception):
    """Statement statistics cannot be read here (no extension, no privilege); not a failure."""


class VendorProbe(ABC):
    vendor: ClassVar[str]
    # The observations read_server() fills: they describe the whole server, so the aliases on
    # it share them. Everything else a probe reads belongs to the alias's database.
    server_facts: ClassVar[tuple[str, ...]] = SERVER_FACTS

    @abstractmethod
    def connection_settings(self, settings: dict[str, Any], deadline: float) -> dict[str, Any]:
        """A copy of the alias's Django settings with driver timeouts and read-only mode added."""

    def settings_after_refusal(
        self, settings: dict[str, Any], error: BaseException
    ) -> dict[str, Any] | None:
        """Settings to connect with instead when the server refused these ones for a start-up
        setting it does not take, or None (most servers take whatever their driver sends)."""
        return None

    def prepare_connection(self, wrapper: Any, deadline: float) -> None:  # noqa: B027
        """Run once on every new connection, before the first probe query; most need nothing."""

    def keep_connection(self, settings: dict[str, Any]) -> bool:
        """Whether a connection opened with these connection_settings() may serve later probes
        (an SQLite file opened immutable caches what it read, so it may not)."""
        return True

    def start_probe(self, wrapper: Any, remaining: float) -> None:  # noqa: B027
        """Run before every probe with the seconds left until its deadline; most need nothing."""

    def ping(self, cursor: Any) -> None:
        cursor.execute("SELECT 1")
        cursor.fetchone()

    @abstractmethod
    def read_server(self, wrapper: Any, cursor: Any, observations: Observations) -> None:
        """Facts of the whole server: version, connections, role, replication lag.

        Aliases on one server share them, so a round reads them through one alias per server.
        """

    def read_activity(self, wrapper: Any, cursor: Any, observations: Observations) -> None:  # noqa: B027
        """Read on every probe: the alias's open transactions, lock waits and counters (the
        health signals that come before an outage). A signal it cannot see stays None."""

    @abstractmethod
    def read_size(self, wrapper: Any, cursor: Any) -> float:
        """Bytes used by the alias's database."""

    def read_ids(self, wrapper: Any, cursor: Any, top_n: int) -> list[IdHeadroom] | None:
        """The `top_n` id columns (sequences, AUTO_INCREMENT, rowid) with the least headroom,
        or None where that cannot be read. Read at most once per refresh_interval."""
        return None

    def read_maintenance(  # noqa: B027
        self, wrapper: Any, cursor: Any, observations: Observations, top_n: int
    ) -> None:
        """What maintenance (VACUUM, ANALYZE, OPTIMIZE) is due, for the `top_n` tables with the
        most dead rows and the largest: fills `tables` and the vendor's own fields of
        MAINTENANCE_FIELDS. Read at most once per refresh_interval."""

    def read_integrity(self, wrapper: Any, cursor: Any) -> bool | None:
        """A consistency check of the database file, or None where the vendor has none. Read at
        most once per integrity_interval."""
        return None

    def read_statements(
        self, wrapper: Any, cursor: Any, top_n: int, text_length: int, timeout: float
    ) -> list[Statement] | None:
        """Top statements by total time, or None where the vendor has no such statistics."""
        return None

    @abstractmethod
    def classify(self, error: BaseException) -> str | None:
        """The failure reason for a driver error, or None to fall back on the generic rules."""

    def interrupt(self, raw_connection: Any) -> None:
        """Wake a probe thread blocked on this connection so that it fails fast.

        Shutting the socket down makes a read blocked in the driver return at once, where the
        driver itself would wait for the server forever (a stopped server still ACKs packets).
        """
        shutdown_socket(raw_connection.fileno())


def shutdown_socket(fd: int) -> None:
    if fd < 0:
        return
    duplicate = os.dup(fd)
    try:
        with socket.socket(fileno=duplicate) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def whole_seconds(deadline: float, *, minimum: int = 1) -> int:
    """Drivers take whole seconds; round up so that the driver never gives up before we do."""
    return max(minimum, math.ceil(deadline))


def driver_error(error: BaseException) -> BaseException:
    """The driver exception behind Django's wrapper, for vendor-specific codes."""
    return error.__cause__ if error.__cause__ is not None else error
