"""Container HEALTHCHECK: is the exporter itself answering? Standard library only.

Calls /livez, the service's liveness answer: 200 while the process serves requests, whatever its
databases do (a down database must not get the exporter restarted: that would not bring the
database back). /livez needs no token even when DBHEALTH_AUTH_TOKEN protects the other endpoints,
and it never probes, so the check stays cheap and bounded.

Calls the address the service listens on (DBHEALTH_BIND, as `manage.py serve` reads it), or
DBHEALTH_HEALTHCHECK_URL when set.
"""

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 8
DEFAULT_BIND = "127.0.0.1:10433"  # dbhealth.serving.server's; the image sets DBHEALTH_BIND
# A service listening on every address answers on the loopback one.
LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]"}


def service_url() -> str:
    bind = os.environ.get("DBHEALTH_BIND") or DEFAULT_BIND
    host, _, port = bind.strip().rpartition(":")
    return f"http://{LOOPBACK.get(host, host)}:{port}/livez"


def main() -> int:
    url = os.environ.get("DBHEALTH_HEALTHCHECK_URL") or service_url()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        print(f"dbhealth does not answer at {url}: {error}", file=sys.stderr)
        return 1
    if status == 200:
        return 0
    print(f"dbhealth answered {status} at {url}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
