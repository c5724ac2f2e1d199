"""A database host behind a firewall that silently drops packets, as a network namespace.

The server runs inside its own network namespace, reached from the test process over a veth
pair. An nftables rule in that namespace drops every packet addressed to it: no RST, no ICMP, so
a client's kernel would retransmit for minutes. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN), `ip`
(iproute2) and `nft` (nftables).
"""

import os
import shutil
import subprocess
from types import TracebackType
from typing import Self

from tests.support.postgres import PostgresServer
from tests.support.process import as_user

TABLE = "dbhealth_black_hole"


class NamespaceUnavailable(RuntimeError):
    """This machine cannot create the namespace; the message says why."""


def run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NamespaceUnavailable(f"{' '.join(command)}: {result.stderr.strip()}")


class NetworkNamespace:
    """A namespace with a /30 link to this one: host side .1, namespace side .2."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.name = f"dbhealth-{tag}"
        self.outside_link = f"dbh{tag}o"
        self.inside_link = f"dbh{tag}i"
        # One /30 of 10.213.0.0/16 per test process.
        slot = tag % 16384
        self.outside_address = f"10.213.{slot // 64}.{slot % 64 * 4 + 1}"
        self.address = f"10.213.{slot // 64}.{slot % 64 * 4 + 2}"

    def __enter__(self) -> Self:
        if os.geteuid() != 0:
            raise NamespaceUnavailable("creating a network namespace needs root")
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                raise NamespaceUnavailable(f"`{tool}` is not installed (iproute2, nftables)")
        run("ip", "netns", "add", self.name)
        try:
            run(
                "ip",
                "link",
                "add",
                self.outside_link,
                "type",
                "veth",
                "peer",
                "name",
                self.inside_link,
                "netns",
                self.name,
            )
            run("ip", "addr", "add", f"{self.outside_address}/30", "dev", self.outside_link)
            run("ip", "link", "set", self.outside_link, "up")
            self.inside("ip", "addr", "add", f"{self.address}/30", "dev", self.inside_link)
            self.inside("ip", "link", "set", self.inside_link, "up")
            self.inside("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def inside(self, *command: str) -> None:
        run("ip", "netns", "exec", self.name, *command)

    def drop_everything(self) -> None:
        """Packets into the namespace vanish: connects and reads hang instead of failing."""
        self.inside(
            "nft",
            f"add table inet {TABLE}; "
            f"add chain inet {TABLE} input {{ type filter hook input priority 0; policy drop; }}",
        )

    def heal(self) -> None:
        self.inside("nft", f"delete table inet {TABLE}")

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.outside_link], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class NamespacedPostgres(PostgresServer):
    """A PostgreSQL primary listening only on the namespace's address."""

    def __init__(self, namespace: NetworkNamespace) -> None:
        super().__init__()
        self.namespace = namespace
        self.host = namespace.address
        self._server_user = self.user

    def _prepare(self) -> None:
        super()._prepare()
        with (self.datadir / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.namespace.outside_address}/32 scram-sha-256\n")

    def start(self) -> None:
        # `ip netns exec` must run as root; the server itself still drops to its own user.
        self.user = None
        try:
            super().start()
        finally:
            self.user = self._server_user

    def _command(self) -> list[str]:
        server = [*super()._command(), "-c", f"listen_addresses={self.host}"]
        return ["ip", "netns", "exec", self.namespace.name, *as_user(self._server_user, server)]
