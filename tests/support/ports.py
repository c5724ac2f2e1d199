"""Free TCP ports on the loopback interface, below the kernel's ephemeral range.

Ports the kernel picks for bind(0) come from its ephemeral range (32768-60999 here), which is also
where it takes the source ports of outgoing connections: a server started on such a port may find
it taken by a client's connection a moment later. So ports are drawn from below that range.
"""

import os
import random
import socket

LOWEST = 20000
HIGHEST = 32767  # below net.ipv4.ip_local_port_range
_issued: set[int] = set()
# Separate pytest processes draw from different places; a bind test catches the rest.
_draw = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port nothing is bound to on host now, never handed out before by this process.

    A killed server can always restart on its old port without a sibling having grabbed it.
    """
    for _ in range(1000):
        port = _draw.randint(LOWEST, HIGHEST)
        if port in _issued:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _issued.add(port)
        return port
    raise RuntimeError(f"no free port between {LOWEST} and {HIGHEST} on {host}")
