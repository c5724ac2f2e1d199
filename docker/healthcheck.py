"""Container HEALTHCHECK: is the exporter itself answering? Standard library only.

/healthz answers 503 while a critical database is down; the exporter is healthy all the same
(restarting it would not bring the database back), so any answer from the service counts.
Sends the bearer token when one is configured, and a scrape timeout so the check stays bounded.
Calls the address the service listens on (DBHEALTH_BIND, as `manage.py serve` reads it), or
DBHEALTH_HEALTHCHECK_URL when set.
"""

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_SECONDS = 8
DEFAULT_BIND = "127.0.0.1:9808"  # exporter/server.py's; the image sets DBHEALTH_BIND
# A service listening on every address answers on the loopback one.
LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]"}


def token() -> str:
    path = os.environ.get("DBHEALTH_AUTH_TOKEN_FILE", "")
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return os.environ.get("DBHEALTH_AUTH_TOKEN", "")


def service_url() -> str:
    bind = os.environ.get("DBHEALTH_BIND") or DEFAULT_BIND
    host, _, port = bind.strip().rpartition(":")
    return f"http://{LOOPBACK.get(host, host)}:{port}/healthz"


def main() -> int:
    url = os.environ.get("DBHEALTH_HEALTHCHECK_URL") or service_url()
    request = urllib.request.Request(
        url, headers={"X-Prometheus-Scrape-Timeout-Seconds": str(TIMEOUT_SECONDS - 2)}
    )
    if secret := token():
        request.add_header("Authorization", f"Bearer {secret}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        print(f"dbhealth does not answer at {url}: {error}", file=sys.stderr)
        return 1
    if status in (200, 503):
        return 0
    print(f"dbhealth answered {status} at {url}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
