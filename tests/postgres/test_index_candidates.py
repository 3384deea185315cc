"""db.index.missing suggests only indexes that can be created: candidate words of the
statement text are checked against the table's real columns, and when none is one
(functions, casts) the suggestion is the statement's plan instead."""

from __future__ import annotations

import re

from stackmedic.findings import Severity
from tests.fixtures.postgres import PostgresServer
from tests.postgres.conftest import Sessions, doctor, new_database
from tests.postgres.test_sessions import filled

TABLES = """
    CREATE EXTENSION pg_stat_statements;
    CREATE TABLE orders AS SELECT g AS id, g % 100 AS customer_id, 'n' || g AS name,
        g * 1.5 AS total FROM generate_series(1, 5000) g;
    CREATE TABLE people AS SELECT g AS id, 'P' || g AS name, now()::date - g % 90 AS born
        FROM generate_series(1, 5000) g;
    ANALYZE orders; ANALYZE people;
"""
# Each read 3 times with different values: 6 sequential scans of each table.
READS = [
    ("SELECT count(*) FROM orders WHERE md5(total::text) = %s AND customer_id = %s",
     lambda i: [f"{i}", i]),
    ("SELECT count(*) FROM orders WHERE total::text LIKE %s AND lower(name) = %s",
     lambda i: [f"{i}%", f"n{i}"]),
    ("SELECT count(*) FROM people WHERE lower(name) = %s AND born::date = %s",
     lambda i: [f"p{i}", "2026-01-01"]),
    ("SELECT count(*) FROM people WHERE md5(id::text) = %s", lambda i: [f"{i}"]),
]


def test_suggestions_name_only_real_columns(pg_stats: PostgresServer,
                                            sessions: Sessions) -> None:
    """A table filtered on a column and on casts/functions gets an index on the column
    only (and it can be created); one filtered on expressions only gets the EXPLAIN
    (ANALYZE, BUFFERS) of its statement, which runs once given values."""
    dsn = new_database(pg_stats, "candidates", TABLES)
    conn = sessions.open(dsn)
    for i in range(3):
        for statement, values in READS:
            conn.execute(statement, values(i))
    conn.close()  # the backend flushes its statistics as it exits
    run = doctor(dsn, min_table_rows=1000)
    found = {f.evidence["table"]: f for f in run.findings
             if f.symptom == "db.index.missing" and f.severity is not Severity.OK}
    assert set(found) == {"public.orders", "public.people"}, [f.summary for f in run.findings]

    orders = found["public.orders"]
    assert orders.evidence["candidate_columns"] == ["customer_id"]
    index = orders.evidence["suggested_index"]
    assert index in filled(orders)
    sessions.open(dsn).execute(index)  # CONCURRENTLY: outside a transaction, as advised

    people = found["public.people"]
    assert people.evidence["candidate_columns"] == []
    plan = people.evidence["suggested_index"]
    assert plan.startswith("EXPLAIN (ANALYZE, BUFFERS) SELECT") and plan in filled(people)
    statement = re.sub(r"\$\d+", "%s", plan.split(";", 1)[0])
    values = ["P1", "2026-01-01"][:statement.count("%s")]
    assert "Seq Scan on people" in str(sessions.open(dsn).execute(statement, values).fetchall())
