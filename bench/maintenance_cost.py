"""Server time of one maintenance read (dbhealth.probing.vendors.postgresql.MAINTENANCE_QUERY)
against the number of tables in the database, on a throwaway PostgreSQL server.

The read runs at most once per refresh_interval (60 s by default), so its cost per scrape is
this figure divided by the scrapes in that interval. Printed, never asserted:

    .venv/bin/python -m bench.maintenance_cost [--tables 1 100 1000] [--reads 20]
"""

import argparse
import statistics

from dbhealth.probing.vendors.postgresql import MAINTENANCE_QUERY

from tests.support.postgres import PostgresServer

TOP_N = 10


def server_milliseconds(server: PostgresServer, database: str) -> float:
    """Execution time the server reports for one read (EXPLAIN ANALYZE, no result transfer)."""
    plan = server.sql(
        "EXPLAIN (ANALYZE, FORMAT JSON) " + MAINTENANCE_QUERY,
        dbname=database,
        params=[TOP_N, 2 * TOP_N, TOP_N],
    )
    return float(plan[0][0][0]["Execution Time"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tables", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--reads", type=int, default=20)
    args = parser.parse_args()
    with PostgresServer() as server:
        for count in args.tables:
            database = f"tables_{count}"
            server.create_database(database)
            server.sql(
                "DO $$ BEGIN FOR n IN 1.." + str(count) + " LOOP EXECUTE format("
                "'CREATE TABLE t%1$s (id int PRIMARY KEY, body text);"
                " INSERT INTO t%1$s SELECT g, ''x'' FROM generate_series(1, 100) AS g;"
                " DELETE FROM t%1$s WHERE id <= %2$s', n, n % 100); END LOOP; END $$",
                dbname=database,
            )
            times = [server_milliseconds(server, database) for _ in range(args.reads)]
            print(
                f"{count:>6} tables: median {statistics.median(times):.2f} ms,"
                f" max {max(times):.2f} ms of server time per maintenance read"
                f" (top {TOP_N}, {args.reads} reads)"
            )


if __name__ == "__main__":
    main()
