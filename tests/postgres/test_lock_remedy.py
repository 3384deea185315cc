"""The remedy of a lock chain fits its head: cancel only a running statement."""

from __future__ import annotations

from stackmedic.findings import Finding
from stackmedic.report.model import build_report
from stackmedic.report.terminal import render_terminal
from stackmedic.testing import with_symptom
from tests.fixtures.postgres import PostgresServer
from tests.postgres.conftest import Sessions, doctor, wait_for


def blocked_by(server: PostgresServer, sessions: Sessions, table: str,
               head_sql: str) -> tuple[int, Finding, str]:
    """A head session that updated a row and then runs `head_sql` in the same
    transaction, and a second session waiting for that row: the head's pid, the
    db.locks.blocking finding and the terminal report."""
    server.psql(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int PRIMARY KEY, "
                f"v int); INSERT INTO {table} VALUES (1, 0)")
    head = sessions.open(server.dsn(), app="holder", autocommit=False)
    head.execute(f"UPDATE {table} SET v = 1 WHERE id = 1")
    if head_sql:
        sessions.background(head, head_sql)
    waiter = sessions.open(server.dsn(), app="waiter")
    sessions.background(waiter, f"UPDATE {table} SET v = 2 WHERE id = 1")
    pid = waiter.info.backend_pid
    wait_for(lambda: server.psql(f"SELECT 1 FROM pg_stat_activity WHERE pid = {pid} AND "
                                 "wait_event_type = 'Lock' AND query_start < now() - "
                                 "'0.3s'::interval"), "a lock wait")
    run = doctor(server.dsn(), {"db.locks.blocking": {"warning": 0.2}})
    [finding] = with_symptom(run.findings, "db.locks.blocking")
    return head.info.backend_pid, finding, render_terminal(build_report(run), width=200)


def test_idle_in_transaction_head_is_terminated_not_cancelled(
        pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A head idle in transaction has no statement to cancel: the fix terminates it,
    on one line that the terminal report indents like the rest of the remedy's code."""
    head, finding, shown = blocked_by(pg_busy, sessions, "lock_idle", "")
    assert finding.evidence["head_state"] == "idle in transaction"
    assert finding.evidence["head_fix"] == f"SELECT pg_terminate_backend({head});"
    assert finding.remedy is not None
    assert "pg_cancel_backend" not in "\n".join(finding.remedy.steps)
    assert [line for line in shown.splitlines() if line.lstrip().startswith("SELECT pg_")] \
        == [" " * 17 + f"SELECT pg_terminate_backend({head});"]


def test_active_head_is_cancelled_first_on_one_line(
        pg_busy: PostgresServer, sessions: Sessions) -> None:
    """A head running a statement is cancelled first, then terminated if it still
    blocks: one line, so it indents like the rest of the remedy's code."""
    head, finding, shown = blocked_by(pg_busy, sessions, "lock_busy",
                                      "SELECT pg_sleep(60) /* slow step */")
    assert finding.evidence["head_state"] == "active"
    assert finding.evidence["head_fix"] == (
        f"SELECT pg_cancel_backend({head});  -- if it still blocks: "
        f"SELECT pg_terminate_backend({head});")
    assert [line for line in shown.splitlines() if line.lstrip().startswith("SELECT pg_")] \
        == [" " * 17 + finding.evidence["head_fix"]]
    assert not [v for v in finding.evidence.values() if isinstance(v, str) and "\n" in v]
