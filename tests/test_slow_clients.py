"""Slow clients do not starve scrapes: the service answers /metrics while 200 idle connections and
8 slowloris connections (a request head trickling in, one header line every 2 s) stay open.

No wall-clock assertion here: bench/slow_clients.py measures how long the scrapes take.
"""

import time

from tests.serving import SlowClients, serve

IDLE = 200
SLOW = 8
INTERVAL = 2.0  # seconds between two header lines of a slowloris connection
MIN_SCRAPES = 5
MAX_SCRAPES = 40
MAX_SECONDS = 60.0
CLIENT_TIMEOUT = 10.0


def test_scrapes_answer_while_idle_and_slowloris_connections_stay_open(tmp_path):
    # Long enough for the slow connections to stay open through the scrapes: the deadline that
    # closes them (tests/dbhealth/serving/test_http_protocol.py) is not what this test is about.
    env = {"DBHEALTH_DATA_DIR": str(tmp_path / "data"), "DBHEALTH_REQUEST_HEAD_TIMEOUT": "600"}
    with (
        serve(env, tmp_path / "service.log", "/sd") as served,
        SlowClients(served.address, idle=IDLE, slow=SLOW, interval=INTERVAL) as clients,
    ):
        give_up_at = time.monotonic() + MAX_SECONDS
        statuses = []
        # Scrape until every slowloris connection has trickled two more header lines in, so
        # that the scrapes overlap them for a while.
        while len(statuses) < MAX_SCRAPES and time.monotonic() < give_up_at:
            status, body = served.get("/metrics", timeout=CLIENT_TIMEOUT)
            statuses.append(status)
            assert status == 200, body[:500]
            assert 'dbhealth_up{alias="default",vendor="sqlite"} 1.0' in body
            if len(statuses) >= MIN_SCRAPES and min(clients.lines_sent) >= 2:
                break
            time.sleep(0.2)
        assert len(statuses) >= MIN_SCRAPES
        assert min(clients.lines_sent) >= 2, clients.lines_sent
        assert clients.errors == []
        # Every slow connection was still waiting on the server when the scrapes were done.
        assert clients.still_open() == (IDLE, SLOW)
