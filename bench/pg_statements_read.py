"""What one statements read costs on a PostgreSQL whose pg_stat_statements holds long texts.

`python -m bench.pg_statements_read [--statements N] [--text-kb K]` fills a throwaway server's
pg_stat_statements with N distinct statements of about K KB of text each (utility statements keep
their text whole), then times, as a pg_monitor role, the read dbhealth made before (ranking the
view with its texts) against the one it makes now (ranking `pg_stat_statements(false)`, then
texts for the top ids only, which later reads skip while the top stays the same). Prints
medians; asserts nothing.
"""

import argparse
import statistics
import time

import psycopg
from dbhealth.probing.vendors.postgresql import MARK, RANK_QUERY, TEXTS_QUERY

from tests.support.postgres import PostgresServer

# The read before: every text loaded, the minimum per queryid kept.
TEXT_RANK_QUERY = """
SELECT queryid::text, left(min(query), %s), sum(calls)::bigint,
       sum(total_exec_time) / 1000.0, sum(rows)::bigint
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND queryid IS NOT NULL
GROUP BY queryid
ORDER BY sum(total_exec_time) DESC
LIMIT %s
"""
TOP_N = 10
SOURCE_LENGTH = 1024
ROUNDS = 7


def timed(connection: psycopg.Connection, query: str, params: list) -> tuple[float, list]:
    started = time.perf_counter()
    rows = connection.execute(query, params).fetchall()
    return time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=3000)
    parser.add_argument("--text-kb", type=int, default=20)
    args = parser.parse_args()
    with PostgresServer() as server:
        server.create_database("bench")
        server.create_role("monitor")
        padding = "x" * (args.text_kb * 1024)
        with server.connect("bench", autocommit=True) as filler:
            for number in range(args.statements):
                filler.execute(f"DO $$BEGIN PERFORM '{padding}{number}'; END$$")
        [(text_bytes,)] = server.sql(
            "SELECT sum(length(query)) FROM pg_stat_statements", dbname="bench"
        )
        with psycopg.connect(
            host=server.host,
            port=server.port,
            dbname="bench",
            user="monitor",
            password=server.monitor_password,
            autocommit=True,
        ) as connection:
            before = [timed(connection, TEXT_RANK_QUERY, [SOURCE_LENGTH, TOP_N])[0]]
            rank, texts = [], []
            for _ in range(ROUNDS):
                before.append(timed(connection, TEXT_RANK_QUERY, [SOURCE_LENGTH, TOP_N])[0])
                spent, ranked = timed(
                    connection,
                    RANK_QUERY.format(total="total_exec_time"),
                    [[], TOP_N + 32],
                )
                rank.append(spent)
                ids = [row[0] for row in ranked[:TOP_N]]
                texts.append(timed(connection, TEXTS_QUERY, [MARK, SOURCE_LENGTH, ids])[0])
    print(f"pg_stat_statements: {args.statements} statements, {text_bytes / 1e6:.1f} MB of text")
    print(f"  before: ranked with texts       {statistics.median(before) * 1000:9.2f} ms")
    print(f"  now:    ranked without texts    {statistics.median(rank) * 1000:9.2f} ms")
    print(f"          texts of the top {TOP_N}     {statistics.median(texts) * 1000:9.2f} ms")
    print("          (texts are read again only when a new statement enters the top)")


if __name__ == "__main__":
    main()
