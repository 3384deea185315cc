"""Connection failures that are not the server being down: a dsn naming a missing database."""

from __future__ import annotations

import pytest

from stackmedic.findings import Severity
from stackmedic.probes.postgres.collect import classify_error
from stackmedic.testing import with_symptom
from tests.fixtures.postgres import PostgresServer
from tests.postgres.conftest import doctor


def test_missing_database_is_named_with_those_that_exist(pg_shared: PostgresServer) -> None:
    """A dsn naming a database the server lacks gives db.down saying so, with a
    did-you-mean from the databases that exist and a createdb remedy; never
    db.auth.failed (the role was admitted, no password or pg_hba.conf is wrong)."""
    pg_shared.psql("DROP DATABASE IF EXISTS inventory")
    pg_shared.psql("CREATE DATABASE inventory")
    run = doctor(pg_shared.dsn(dbname="inventroy"))
    assert not with_symptom(run.findings, "db.auth.failed"), run.findings
    [finding] = with_symptom(run.findings, "db.down")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["kind"] == "no_database"
    assert "'inventroy' does not exist" in finding.summary
    assert "did you mean 'inventory'?" in finding.summary
    assert "inventory" in finding.evidence["databases"]
    assert finding.evidence["did_you_mean"] == "inventory"
    assert finding.remedy is not None
    assert f"createdb -h 127.0.0.1 -p {pg_shared.port} -U postgres inventroy" in \
        finding.remedy.steps[1]
    assert "pg_hba" not in " ".join(finding.remedy.steps)


@pytest.mark.parametrize(("message", "kind"), [
    ('connection to server at "10.0.0.5", port 5432 failed: FATAL:  database "nosuchdb" '
     'does not exist', "no_database"),
    ('connection to server at "10.0.0.5", port 5432 failed: FATAL:  role "nosuch" does not '
     'exist', "auth"),
])
def test_missing_database_and_missing_role_are_told_apart(message: str, kind: str) -> None:
    """A missing database is its own kind; a missing role stays an authentication failure."""
    assert classify_error(message) == kind
