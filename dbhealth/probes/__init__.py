"""One probe per Django vendor, chosen from the connection's `vendor` attribute."""

from dbhealth.probes.base import StatementsUnavailable, VendorProbe
from dbhealth.probes.mysql import MySQLProbe
from dbhealth.probes.postgresql import PostgreSQLProbe
from dbhealth.probes.sqlite import SQLiteProbe

PROBES: dict[str, VendorProbe] = {
    probe.vendor: probe for probe in (PostgreSQLProbe(), MySQLProbe(), SQLiteProbe())
}

__all__ = ["PROBES", "StatementsUnavailable", "VendorProbe"]
