"""Rules over statistics and catalogs: statements, indexes, vacuum, xid, cache,
replication, and the user-declared uniqueness checks."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from stackmedic.checks import Facts, RuleContext
from stackmedic.findings import Finding, Remedy, Severity
from stackmedic.probes.postgres import probe
from stackmedic.probes.postgres._facts import Row, cannot_judge, worst
from stackmedic.probes.postgres.queries import ident, quote
from stackmedic.thresholds import Threshold

MIB = 1024 * 1024
_BUSY = ("55P03", "57014")  # lock_not_available, query_canceled (statement_timeout)
# PostgreSQL stops assigning transaction ids 3 million before the 2^31 wrap point.
XID_HARD_LIMIT = 2**31 - 1 - 3_000_000
MIN_SEQ_SCANS = 5  # fewer sequential scans than this say nothing about a missing index
MIN_DEAD_TUPLES = 1000
MIN_CACHE_BLOCKS = 1000  # too few block reads for a meaningful hit ratio
ENABLE_STATEMENTS = ("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'; "
                     "-- restart, then in the database: CREATE EXTENSION pg_stat_statements;")
# A word compared with a parameter, not the type of a cast (`total::text LIKE $1`).
_PREDICATE = re.compile(r'(?<![\w:])"?(\w+)"?\s*'
                        r'(?:=|<=?|>=?|\bIN\b|\bLIKE\b|\bILIKE\b|\bBETWEEN\b)\s*'
                        r'(?:\$\d|ANY|\()', re.IGNORECASE)

# A statement EXPLAIN ANALYZE may run: a SELECT (a WITH may hide a DELETE in a CTE).
_READ_ONLY = re.compile(r"\s*\(*\s*SELECT\b", re.IGNORECASE)


def size(n: float) -> str:
    """Bytes as a short human string (1.5 GiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@probe.rule("postgres.slow_queries", uses="snapshot", symptoms=["db.query.slow"],
            thresholds={"db.query.slow": Threshold(500, 5000, unit="ms")})
def slow_queries(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Statements with a high mean execution time, from pg_stat_statements."""
    symptom = "db.query.slow"
    if (stop := cannot_judge(facts, ctx, symptom, "statements")) is not None:
        yield from stop
        return
    st = facts["statements"]
    if not (st["installed"] and st["preloaded"]):
        missing = "CREATE EXTENSION" if st["preloaded"] else "shared_preload_libraries"
        yield ctx.finding(symptom, Severity.INFO,
                          f"pg_stat_statements is not enabled ({missing} missing): slow "
                          "statements cannot be ranked", evidence={**st, "enable":
                                                                    ENABLE_STATEMENTS},
                          cause=f"to enable it: {ENABLE_STATEMENTS}")
        return
    yield from worst(
        ctx, symptom, st["rows"], lambda r: r["mean_ms"],
        lambda r, mean: (f"statement takes {mean:.0f} ms on average over {r['calls']} calls "
                         f"({r['total_ms'] / 1000:.1f}s in total): {r['query'][:80]}", r,
                         "a missing index, a plan gone bad after data growth, or lock waits "
                         "(hypothesis: EXPLAIN (ANALYZE, BUFFERS) it)"),
        identity=("queryid",), ok_summary=lambda m: f"no slow statement (highest mean "
                                                    f"{m:.0f} ms)")


def _candidates(table: Row, database: str,
                statements: list[Row]) -> tuple[list[str], str | None]:
    """Columns of `table` compared with parameters in the statements of `database` that
    read it, and the costliest such statement (to EXPLAIN when no column is found).

    Words of the statement text are kept only if they are columns of the table: the
    text alone cannot tell `md5(total::text) = $1` or `lower(name) = $1` apart from a
    comparison of a plain column, and an index on a word that is not one fails."""
    name = table.get("relname") or table["table"].split(".", 1)[-1]
    reads = re.compile(rf'\bFROM\s+(?:"?\w+"?\.)?"?{re.escape(name)}"?(?:\s|$)', re.IGNORECASE)
    real = {column.lower(): column for column in table.get("columns") or []}
    found: Counter[str] = Counter()
    readers = [row for row in statements if row.get("database", database) == database
               and reads.search(row.get("query") or "")]  # statements of every database
    for row in readers:
        where = re.split(r"\bWHERE\b", row["query"], maxsplit=1, flags=re.IGNORECASE)
        if len(where) == 2:
            found.update(m.lower() for m in _PREDICATE.findall(where[1]) if m.lower() in real)
    costliest = max(readers, key=lambda row: row.get("total_ms") or 0.0, default=None)
    return ([ident(real[col]) for col, _ in found.most_common(3)],
            costliest["query"] if costliest else None)


def _suggestion(table: str, columns: list[str], statement: str | None) -> str:
    """An index on the candidate columns; without any, the plan of the statement that
    scans the table (it shows the expressions it filters on), or the bare template."""
    if columns:
        return f"CREATE INDEX CONCURRENTLY ON {table} ({', '.join(columns)});"
    if statement:
        # EXPLAIN ANALYZE executes its statement: a DELETE or UPDATE would change data.
        explain = "EXPLAIN (ANALYZE, BUFFERS)" if _READ_ONLY.match(statement) else "EXPLAIN"
        return (f"{explain} {statement.rstrip().rstrip(';')}; -- with real "
                "values for $1…: index what the Seq Scan filters on (an expression index "
                "for a function or cast)")
    return (f"CREATE INDEX CONCURRENTLY ON {table} (<column>);"
            " -- the column of the WHERE clause of its frequent queries")


@probe.rule("postgres.index_missing", uses="snapshot", symptoms=["db.index.missing"],
            thresholds={"db.index.missing": Threshold(0.50, None, unit="ratio")})
def index_missing(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Large tables read mostly by sequential scans."""
    symptom = "db.index.missing"
    if (stop := cannot_judge(facts, ctx, symptom, "tables")) is not None:
        yield from stop
        return
    statements = (facts.get("statements") or {}).get("rows", [])
    items = []
    for t in facts["tables"]:
        if t["seq_scan"] < MIN_SEQ_SCANS:
            continue
        columns, statement = _candidates(t, facts["server"]["database"], statements)
        evidence = {k: v for k, v in t.items() if k != "columns"}
        items.append({**evidence, "seq_share": t["seq_scan"] / (t["seq_scan"] + t["idx_scan"]),
                      "rows_per_seq_scan": t["seq_tup_read"] // t["seq_scan"],
                      "candidate_columns": columns, "statement": statement,
                      "suggested_index": _suggestion(t["table"], columns, statement)})
    yield from worst(
        ctx, symptom, items, lambda t: t["seq_share"],
        lambda t, share: (f"{t['table']} ({t['n_live_tup']} rows) is read by sequential "
                          f"scans {share:.0%} of the time ({t['seq_scan']} scans, "
                          f"{t['rows_per_seq_scan']} rows each)", t,
                          "queries filter this table on columns no index covers "
                          "(hypothesis: " + (f"candidates {', '.join(t['candidate_columns'])})"
                                             if t["candidate_columns"] else
                                             "its statements filter on expressions such as "
                                             "functions or casts: see their plan)"
                                             if t["statement"] else
                                             "enable pg_stat_statements to see which)")),
        identity=("table",), ok_summary=lambda s: f"no large table is mostly read by "
                                                  f"sequential scans (highest {s:.0%})")


@probe.rule("postgres.index_unused", uses="snapshot", symptoms=["db.index.unused"],
            thresholds={"db.index.unused": Threshold(1 * MIB, None, unit="bytes")})
def index_unused(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Non-unique indexes never scanned since statistics were reset."""
    symptom = "db.index.unused"
    if (stop := cannot_judge(facts, ctx, symptom, "indexes")) is not None:
        yield from stop
        return
    reset = ((facts.get("databases") or {}).get("cache") or {}).get("stats_reset")
    items = [{**i, "stats_reset": reset} for i in facts["indexes"]["unused"]]
    yield from worst(
        ctx, symptom, items, lambda i: i["bytes"],
        lambda i, n: (f"index {i['index']} on {i['table']} ({size(n)}) was never scanned "
                      f"since statistics were reset ({reset or 'never'})"
                      + ("" if i.get("valid", True) else "; it is INVALID (a failed CREATE "
                         "INDEX CONCURRENTLY): writes maintain it, no query can use it"), i,
                      "no query uses this index (superseded by another, or written for a "
                      "query that no longer runs); it still costs writes and space"),
        identity=("index",), ok_summary=lambda n: "no unused index above the size threshold")


def _drop(group: Row, i: int) -> str:
    """The statement removing the i-th index of a duplicate group: an index backing a
    constraint goes with its constraint (DROP INDEX would fail). DROP CONSTRAINT takes
    an ACCESS EXCLUSIVE lock: with a lock_timeout it gives up instead of queueing every
    reader and writer of the table behind a long transaction."""
    constraint = (group.get("constraints") or [None] * len(group["indexes"]))[i]
    if constraint:
        return (f"SET lock_timeout = '2s'; ALTER TABLE {group['table']} DROP CONSTRAINT "
                f"{constraint}; RESET lock_timeout;")
    return f"DROP INDEX CONCURRENTLY {group['indexes'][i]};"


@probe.rule("postgres.index_duplicate", uses="snapshot", symptoms=["db.index.duplicate"],
            thresholds={"db.index.duplicate": Threshold(1, None, unit="indexes")})
def index_duplicate(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Indexes with the same columns, operator classes, expressions and predicate."""
    symptom = "db.index.duplicate"
    if (stop := cannot_judge(facts, ctx, symptom, "indexes")) is not None:
        yield from stop
        return
    items = [{**g, "keep": g["indexes"][0], "redundant": g["indexes"][1:],
              "drop_index": " ".join(_drop(g, i) for i in range(1, len(g["indexes"])))}
             for g in facts["indexes"]["duplicate"]]
    yield from worst(
        ctx, symptom, items, lambda g: len(g["redundant"]),
        lambda g, n: (f"{g['table']} has {len(g['indexes'])} identical indexes: "
                      f"{', '.join(g['indexes'])} ({size(g['bytes'])} in total)", g,
                      "the same index was created twice (a migration re-run, or an ORM "
                      "index beside a hand-made one)"),
        identity=("table", "indexes"), ok_summary=lambda n: "no duplicate indexes")


def _dead_cause(table: Row) -> str:
    if table["autovacuum_off"]:
        return "autovacuum is off for the whole server (autovacuum = off): nothing cleans " \
               "up dead rows unless someone runs VACUUM"
    if table["autovacuum_disabled"]:
        return "autovacuum is disabled for this table"
    return "autovacuum is not keeping up: long transactions hold back cleanup, or its cost " \
           "limits are too low for the write rate (hypothesis)"


@probe.rule("postgres.vacuum", uses="snapshot", symptoms=["db.vacuum.dead_tuples"],
            thresholds={"db.vacuum.dead_tuples": Threshold(0.20, 0.50, unit="ratio")})
def dead_tuples(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Share of dead row versions per large table, with its last (auto)vacuum."""
    symptom = "db.vacuum.dead_tuples"
    if (stop := cannot_judge(facts, ctx, symptom, "tables")) is not None:
        yield from stop
        return
    server_off = facts["server"]["settings"].get("autovacuum") == "off"
    items = [{**t, "database": facts["server"]["database"], "autovacuum_off": server_off,
              "dead_ratio": t["n_dead_tup"] / max(1, t["n_dead_tup"] + t["n_live_tup"])}
             for t in facts["tables"] if t["n_dead_tup"] >= MIN_DEAD_TUPLES]
    yield from worst(
        ctx, symptom, items, lambda t: t["dead_ratio"],
        lambda t, ratio: (f"{t['table']}: {ratio:.0%} of rows are dead ({t['n_dead_tup']} "
                          f"dead, {t['n_live_tup']} live; last autovacuum "
                          f"{t['last_autovacuum'] or 'never'})", t, _dead_cause(t)),
        identity=("table",), ok_summary=lambda r: f"dead tuples under control (worst {r:.0%})")


@probe.rule("postgres.xid", uses="snapshot", symptoms=["db.xid.wraparound"],
            thresholds={"db.xid.wraparound": Threshold(0.50, 0.75, unit="ratio")})
def wraparound(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Age of each database's oldest unfrozen transaction id against the hard limit."""
    symptom = "db.xid.wraparound"
    if (stop := cannot_judge(facts, ctx, symptom, "databases")) is not None:
        yield from stop
        return
    freeze = int(facts["server"]["settings"].get("autovacuum_freeze_max_age", 200_000_000))
    items = [{**d, "hard_limit": XID_HARD_LIMIT, "autovacuum_freeze_max_age": freeze,
              "past_freeze_max_age": d["age"] > freeze} for d in facts["databases"]["xid"]]
    yield from worst(
        ctx, symptom, items, lambda d: d["age"] / XID_HARD_LIMIT,
        lambda d, ratio: (f"database {d['datname']}: transaction id age {d['age']} is "
                          f"{ratio:.0%} of the way to the wraparound shutdown", d,
                          "anti-wraparound vacuum cannot finish: a long transaction, an "
                          "abandoned prepared transaction or replication slot holds the "
                          "xmin horizon, or vacuum is too slow (hypothesis)"),
        identity=("datname",), ok_summary=lambda r: f"transaction id age is {r:.1%} of "
                                                    "the wraparound limit")


@probe.rule("postgres.cache", uses="snapshot", symptoms=["db.cache.hit_ratio_low"],
            thresholds={"db.cache.hit_ratio_low": Threshold(0.90, 0.80, unit="ratio",
                                                            direction="below")})
def cache_hit_ratio(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Share of block reads served from shared_buffers in this database."""
    symptom = "db.cache.hit_ratio_low"
    if (stop := cannot_judge(facts, ctx, symptom, "databases")) is not None:
        yield from stop
        return
    stats = facts["databases"]["cache"] or {"blks_hit": 0, "blks_read": 0}
    total = stats["blks_hit"] + stats["blks_read"]
    ratio = stats["blks_hit"] / total if total else 1.0
    evidence = {**stats, "database": facts["server"]["database"],
                "shared_buffers_hint": "SHOW shared_buffers;"}
    if total < MIN_CACHE_BLOCKS:
        yield ctx.finding(symptom, Severity.OK, f"too few block reads ({total}) to judge the "
                          "cache hit ratio", observed=round(ratio, 4), evidence=evidence)
        return
    yield ctx.judge(symptom, round(ratio, 4), f"{ratio:.1%} of block reads in "
                    f"{evidence['database']} hit shared_buffers", evidence=evidence,
                    identity=("database",),
                    cause="the working set is larger than shared_buffers, or large "
                          "sequential scans evict hot pages (hypothesis)")


def _lag_items(rep: Row) -> list[Row]:
    items = [{"kind": "replica", "name": r["application_name"], **r} for r in rep["replicas"]]
    items += [{"kind": "slot", "name": s["slot_name"], **s} for s in rep["slots"]]
    if rep["standby"] is not None:
        items.append({"kind": "standby", "name": "this server", **rep["standby"]})
    return [{**i, "lag_bytes": i["lag_bytes"] or 0} for i in items]


def _lag_fix(item: Row) -> str:
    """The first command for this kind of lag, to run where the comment says."""
    if item["kind"] == "slot" and not item.get("active"):
        return (f"SELECT pg_drop_replication_slot({quote(item['name'])});  -- on the primary, "
                "once sure its consumer is gone for good")
    if item["kind"] == "slot":
        return (f"SELECT * FROM pg_stat_replication;  -- slot {item['name']}'s consumer is "
                "connected but behind: check its replay (or the logical subscriber)")
    where = "on this standby" if item["kind"] == "standby" else \
        f"on replica {item['name']} ({item.get('client_addr')})"
    if item["kind"] == "standby" and not item.get("paused"):
        return (f"SELECT pid, now() - query_start, query FROM pg_stat_activity WHERE state = "
                f"'active' ORDER BY query_start;  -- {where}: queries delaying replay")
    return (f"SELECT pg_is_wal_replay_paused();  -- {where}; if it says true: "
            "SELECT pg_wal_replay_resume();")


def _lag_text(item: Row, n: float) -> tuple[str, Row, str]:
    item = {**item, "fix": _lag_fix(item)}
    secs = f", {item['lag_s']:.0f}s" if item.get("lag_s") is not None else ""
    if item["kind"] == "slot":
        state = "active" if item["active"] else "inactive"
        return (f"{state} replication slot {item['name']} holds {size(n)} of WAL", item,
                "the slot's consumer is gone or far behind, so the primary keeps its WAL"
                if not item["active"] else "the slot's consumer cannot keep up")
    if item["kind"] == "standby":
        paused = " (replay paused)" if item.get("paused") else ""
        return (f"this standby's replay is {size(n)} behind what it received{secs}{paused}",
                item, "replay is paused or blocked by conflicting queries / slow I/O")
    return (f"replica {item['name']} ({item['client_addr']}) is {size(n)} behind in "
            f"replay{secs}", item, "the replica's replay is paused, blocked by long queries "
            "(hot_standby_feedback/max_standby_*_delay), or its disk/network is too slow")


@probe.rule("postgres.replication", uses="snapshot", symptoms=["db.replication.lag"],
            thresholds={"db.replication.lag": Threshold(64 * MIB, 1024 * MIB, unit="bytes")})
def replication_lag(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Replay lag of each replica and of this standby, and WAL held by each slot."""
    symptom = "db.replication.lag"
    if (stop := cannot_judge(facts, ctx, symptom, "replication")) is not None:
        yield from stop
        return
    yield from worst(ctx, symptom, _lag_items(facts["replication"]), lambda i: i["lag_bytes"],
                     _lag_text, identity=("kind", "name"),
                     ok_summary=lambda n: f"replication lag {size(n)} at most")


@probe.rule("postgres.unique", uses="snapshot", symptoms=["db.constraint.duplicates"],
            thresholds={"db.constraint.duplicates": Threshold(1, None, unit="rows")})
def declared_unique(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """Duplicate values in columns the stack file declares unique."""
    symptom = "db.constraint.duplicates"
    if (stop := cannot_judge(facts, ctx, symptom, "unique")) is not None:
        yield from stop
        return
    user = facts["target"]["user"]
    for entry in facts["unique"]:
        cols = ", ".join(entry["columns"])
        cols_sql = ", ".join(ident(c) for c in entry["columns"])
        table_sql = ".".join(ident(part) for part in entry["table"].split(".", 1))
        evidence = {**entry, "columns": cols, "table_sql": table_sql, "columns_sql": cols_sql,
                    "query": f"SELECT {cols_sql}, count(*) FROM {table_sql} GROUP BY "
                             f"{cols_sql} HAVING count(*) > 1 ORDER BY count(*) DESC;"}
        if "error" in entry:
            grant = f"GRANT SELECT ON {entry['table']} TO {user};"
            sqlstate = entry["error"]["sqlstate"]
            if sqlstate == "42501":
                step = f"Let role {user} read the table (as its owner): `{grant}`"
            elif sqlstate in _BUSY or sqlstate is None:
                step = (f"{entry['table']} was locked by another session or the check ran "
                        "out of time: run it again off-peak, or raise the component's "
                        "`statement_timeout_ms`, `lock_timeout_ms` and `timeout`.")
            else:
                step = (f"Correct the `unique:` entry of component {ctx.component} (table "
                        f"{entry['table']}, columns {cols}): the query failed with "
                        f"\"{entry['error']['message']}\"")
            yield ctx.finding(symptom, Severity.UNKNOWN, f"cannot check that {entry['table']}"
                              f"({cols}) is unique: {entry['error']['message']}",
                              evidence={**evidence, "grant": grant}, identity=("table", "columns"),
                              remedy=Remedy(symptom, (step,)),
                              cause=f"the table or column is missing, or `{grant}` is needed")
            continue
        yield ctx.judge(symptom, entry["extra_rows"],
                        f"{entry['table']}({cols}): {entry['values']} value(s) appear more "
                        f"than once ({entry['extra_rows']} extra rows)" if entry["extra_rows"]
                        else f"{entry['table']}({cols}) has no duplicate values",
                        evidence=evidence, identity=("table", "columns"),
                        cause="no unique constraint enforces this, and concurrent or "
                              "repeated inserts created duplicates")
