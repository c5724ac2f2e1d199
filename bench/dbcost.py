"""Server-side time spent on each contender's own statements, read by user.

PostgreSQL: pg_stat_statements (top-level statements only, execution plus planning time) on the
primary and the replica (or the servers given). MariaDB: performance_schema's per-user statement
summary. Both are cumulative, so a measurement is the difference of two snapshots.
"""

from collections import Counter

from bench.fleet import Fleet
from tests.support.postgres import PostgresServer

PG_QUERY = """
SELECT r.rolname, sum(s.total_exec_time + s.total_plan_time) / 1000.0, sum(s.calls)
FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
WHERE s.toplevel AND r.rolname = ANY(%s)
GROUP BY r.rolname
"""

MARIADB_QUERY = """
SELECT USER, SUM(SUM_TIMER_WAIT) / 1e12, SUM(COUNT_STAR)
FROM performance_schema.events_statements_summary_by_user_by_event_name
WHERE USER IN ({placeholders})
GROUP BY USER
"""


class ServerTime:
    """Cumulative server seconds and statement counts per login, summed over every server."""

    def __init__(self, fleet: Fleet, pg_servers: list[PostgresServer] | None = None) -> None:
        self.fleet = fleet
        self.pg_servers = pg_servers or [fleet.primary, fleet.replica]

    def snapshot(self, pg_roles: list[str], mariadb_users: list[str]) -> dict[str, Counter]:
        seconds: Counter = Counter()
        calls: Counter = Counter()
        if pg_roles:
            for server in self.pg_servers:
                for role, spent, count in server.sql(PG_QUERY, params=[pg_roles]):
                    seconds[role] += float(spent)
                    calls[role] += int(count)
        if mariadb_users:
            query = MARIADB_QUERY.format(placeholders=", ".join(["%s"] * len(mariadb_users)))
            for user, spent, count in self.fleet.mariadb.sql(query, params=mariadb_users):
                seconds[user] += float(spent or 0)
                calls[user] += int(count or 0)
        return {"seconds": seconds, "calls": calls}


def difference(
    before: dict[str, Counter], after: dict[str, Counter], login: str
) -> tuple[float, int]:
    return (
        after["seconds"][login] - before["seconds"][login],
        after["calls"][login] - before["calls"][login],
    )


STATEMENTS_QUERY = """
SELECT left(regexp_replace(s.query, '\\s+', ' ', 'g'), 90), sum(s.calls),
       sum(s.total_exec_time + s.total_plan_time) / 1000.0
FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
WHERE s.toplevel AND r.rolname = %s
GROUP BY 1
"""


def statements(server: PostgresServer, login: str) -> dict[str, tuple[int, float]]:
    """Cumulative (calls, server seconds) per statement text of one login on one server."""
    return {
        text: (int(calls), float(spent))
        for text, calls, spent in server.sql(STATEMENTS_QUERY, params=[login])
    }


def top_statements(
    before: dict[str, tuple[int, float]],
    after: dict[str, tuple[int, float]],
    scrapes: int,
    count: int = 3,
) -> list[dict[str, float | str]]:
    """The statements that cost the server most between two snapshots, per scrape."""
    grown = []
    for text, (calls, spent) in after.items():
        calls_before, spent_before = before.get(text, (0, 0.0))
        grown.append((max(0.0, spent - spent_before), max(0, calls - calls_before), text))
    grown.sort(reverse=True)
    scrapes = max(1, scrapes)
    return [
        {
            "statement": text,
            "ms_per_scrape": round(spent * 1000 / scrapes, 2),
            "calls_per_scrape": round(calls / scrapes, 2),
        }
        for spent, calls, text in grown[:count]
        if spent > 0
    ]
