"""Locate server binaries, failing with the Debian package to install."""

import functools
import glob
import shutil
from pathlib import Path

_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class MissingBinaryError(RuntimeError):
    """A server binary the tests need is not installed."""


def _which(names: tuple[str, ...], package: str) -> Path:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path=_SBIN_PATH)
        if found:
            return Path(found)
    raise MissingBinaryError(
        f"none of {', '.join(names)} found; install it with `apt-get install {package}`"
    )


@functools.cache
def postgres_bindir() -> Path:
    """Newest /usr/lib/postgresql/<version>/bin (Debian's layout)."""
    candidates = [
        Path(path).parent
        for path in glob.glob("/usr/lib/postgresql/*/bin/postgres")
        if Path(path).with_name("pg_basebackup").exists()
    ]
    if not candidates:
        raise MissingBinaryError(
            "no PostgreSQL server under /usr/lib/postgresql/*/bin; "
            "install it with `apt-get install postgresql` (ships pg_stat_statements)"
        )

    def version(bindir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in bindir.parent.name.split(".") if part.isdigit())

    return max(candidates, key=version)


@functools.cache
def mariadb_server() -> Path:
    """The mariadbd (or legacy mysqld) server binary."""
    return _which(("mariadbd", "mysqld"), "mariadb-server")


@functools.cache
def mariadb_install_db() -> Path:
    """The script that creates an empty MariaDB data directory."""
    return _which(("mariadb-install-db", "mysql_install_db"), "mariadb-server")


@functools.cache
def prometheus() -> Path:
    """The Prometheus server binary."""
    return _which(("prometheus",), "prometheus")


@functools.cache
def pgbouncer() -> Path:
    """PgBouncer, the connection pooler put in front of PostgreSQL."""
    return _which(("pgbouncer",), "pgbouncer")


@functools.cache
def setpriv() -> Path:
    """util-linux setpriv: drops privileges and sets the parent-death signal."""
    return _which(("setpriv",), "util-linux")
