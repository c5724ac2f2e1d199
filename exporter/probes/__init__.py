"""One probe per Django vendor, chosen from the connection's `vendor` attribute."""

from exporter.probes.base import StatementsUnavailable, VendorProbe
from exporter.probes.mysql import MySQLProbe
from exporter.probes.postgresql import PostgreSQLProbe
from exporter.probes.sqlite import SQLiteProbe

PROBES: dict[str, VendorProbe] = {
    probe.vendor: probe for probe in (PostgreSQLProbe(), MySQLProbe(), SQLiteProbe())
}

__all__ = ["PROBES", "StatementsUnavailable", "VendorProbe"]
