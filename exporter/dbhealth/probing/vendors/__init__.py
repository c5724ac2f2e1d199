"""One probe per Django vendor, chosen from the connection's `vendor` attribute."""

from dbhealth.probing.vendors.base import StatementsUnavailable, VendorProbe
from dbhealth.probing.vendors.mysql import MySQLProbe
from dbhealth.probing.vendors.postgresql import PostgreSQLProbe
from dbhealth.probing.vendors.sqlite import SQLiteProbe

PROBES: dict[str, VendorProbe] = {
    probe.vendor: probe for probe in (PostgreSQLProbe(), MySQLProbe(), SQLiteProbe())
}

__all__ = ["PROBES", "StatementsUnavailable", "VendorProbe"]
