"""Every probe failure gets one of a small, fixed set of reasons, usable as a metric label."""

import socket

from django.core.exceptions import ImproperlyConfigured

from dbhealth.probing.vendors.base import VendorProbe, driver_error


def classify(error: BaseException, vendor_probe: VendorProbe | None) -> str:
    if vendor_probe is not None:
        reason = vendor_probe.classify(error)
        if reason is not None:
            return reason
    cause = driver_error(error)
    if isinstance(cause, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(cause, ConnectionRefusedError):
        return "refused"
    if isinstance(cause, socket.gaierror):
        return "dns"
    if isinstance(cause, ImproperlyConfigured | ImportError | TypeError | ValueError | KeyError):
        return "config"
    if isinstance(cause, PermissionError):
        return "permission"
    return "error"
