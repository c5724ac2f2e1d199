"""Memory of closed connections given back to the operating system.

A connection allocates KiB in asyncio and uvicorn, and a TLS one tens of KiB in OpenSSL, while
it is open. Freed, glibc's malloc keeps those pages in its heaps for reuse, so after a flood of
connections the process's RSS stays where the flood took it (measured: +50 MB after 1,000
abandoned handshakes, with the objects long freed). malloc_trim(0) hands every whole free page
back. It runs once, RELEASE_DELAY_SECONDS after the first of a burst of closes, rather than on
each (it took well under a millisecond here). Elsewhere than glibc (musl has no malloc_trim)
this does nothing.
"""

import asyncio
import ctypes

RELEASE_DELAY_SECONDS = 1.0


def _malloc_trim():
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_trim = _malloc_trim()
_pending: set[asyncio.AbstractEventLoop] = set()


def release_soon(loop: asyncio.AbstractEventLoop) -> None:
    """Give free heap pages back RELEASE_DELAY_SECONDS from now, unless that is already due."""
    if _trim is None or loop in _pending:
        return
    _pending.add(loop)
    loop.call_later(RELEASE_DELAY_SECONDS, _release, loop)


def _release(loop: asyncio.AbstractEventLoop) -> None:
    _pending.discard(loop)
    _trim(0)
