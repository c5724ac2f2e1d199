"""Server-side time spent on each contender's own statements, read by user.

PostgreSQL: pg_stat_statements (top-level statements only, execution plus planning time) on the
primary and the replica. MariaDB: performance_schema's per-user statement summary. Both are
cumulative, so a measurement is the difference of two snapshots.
"""

from collections import Counter

from bench.fleet import Fleet

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

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def snapshot(self, pg_roles: list[str], mariadb_users: list[str]) -> dict[str, Counter]:
        seconds: Counter = Counter()
        calls: Counter = Counter()
        if pg_roles:
            for server in (self.fleet.primary, self.fleet.replica):
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
