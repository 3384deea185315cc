"""Password literals that a real server keeps verbatim in pg_stat_activity and
pg_stat_statements reach no finding, no recorded fact and no report format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackmedic.cli import main
from tests.fixtures.postgres import PostgresServer
from tests.postgres.conftest import Sessions, doctor, new_database, wait_for

# Each statement with a fragment of its password that must never be printed: plain,
# E'' with an escaped quote, U&'' with a Unicode escape, dollar-quoted, and no space
# between the keyword and the literal (all valid on PostgreSQL 15).
STATEMENTS = {
    "ALTER ROLE app PASSWORD 'hunter2x'": "hunter2x",
    "CREATE USER u2 WITH PASSWORD E'hun\\'ter2y'": "ter2y",
    "ALTER USER u3 PASSWORD U&'hunt\\0065r2z'": "0065r2z",
    "ALTER ROLE u4 ENCRYPTED PASSWORD $pw$hunter2v$pw$": "hunter2v",
    "ALTER ROLE u5 PASSWORD'hunter2w'": "hunter2w",
}
# Every session idle in transaction and every recorded statement is a finding.
THRESHOLDS = {"db.connections.idle_in_transaction": {"warning": 0.0},
              "db.query.slow": {"warning": 0.0}}


def _secrets_in(text: str) -> list[str]:
    return [secret for secret in STATEMENTS.values() if secret in text]


def test_password_literals_never_leave_the_probe(
        pg_stats: PostgresServer, sessions: Sessions, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Role statements left idle in transaction (pg_stat_activity) and recorded by
    pg_stat_statements are judged, yet no password appears in the findings, the
    `--record` facts or the terminal, json, markdown and nagios reports."""
    dsn = new_database(pg_stats, "pwlit", "CREATE EXTENSION pg_stat_statements; "
                                          "CREATE ROLE app; CREATE ROLE u3; CREATE ROLE u4; "
                                          "CREATE ROLE u5")
    for statement in STATEMENTS:
        sessions.open(dsn, app="role-admin", autocommit=False).execute(statement)
    wait_for(lambda: pg_stats.psql("SELECT count(*) FROM pg_stat_activity WHERE "
                                   "state = 'idle in transaction' AND query ILIKE '%password%'",
                                   dbname="pwlit").strip() == str(len(STATEMENTS)),
             "the sessions to be idle in transaction")

    run = doctor(dsn, THRESHOLDS)
    judged = [f for f in run.findings
              if f.symptom in THRESHOLDS and "password" in f.summary.lower()]
    assert {f.symptom for f in judged} == set(THRESHOLDS)  # both views were really read
    assert _secrets_in(json.dumps([f.to_dict() for f in run.findings], default=str)) == []
    assert _secrets_in(json.dumps(run.facts, default=str)) == []

    stack = tmp_path / "stackmedic.yaml"
    stack.write_text(json.dumps({"components": {"db": {"kind": "postgres", "dsn": dsn,
                                                       "thresholds": THRESHOLDS}}}))
    for fmt in ("terminal", "json", "markdown", "nagios"):
        record = tmp_path / f"facts-{fmt}.json"
        with pytest.raises(SystemExit):
            main(["doctor", "-c", str(stack), "-f", fmt, "--record", str(record)])
        out, err = capsys.readouterr()
        assert "db" in out  # the report really was printed
        assert _secrets_in(out + err + record.read_text()) == [], fmt
