"""Free TCP ports on the loopback interface."""

import socket

_issued: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port the kernel considers free on host.

    Ports already handed out by this process are never returned again, so a
    killed server can always restart on its old port without a sibling
    having grabbed it in the meantime.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _issued:
            _issued.add(port)
            return port
