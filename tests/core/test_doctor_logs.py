"""The doctor reads each component's `logs:` and correlates what it finds."""

from pathlib import Path

from stackmedic.findings import Severity
from stackmedic.testing import run_components, with_symptom

REFUSED = ('2026-11-22T05:00:{s:02d}Z ERROR psycopg.OperationalError: connection to server at '
           '"127.0.0.1", port 5432 failed: Connection refused\n')


def test_component_logs_become_findings_explained_by_the_database(tmp_path: Path) -> None:
    """Database errors in api's log are a logs.error.database finding on api, explained by
    db.down on the database it depends on, which is the root cause."""
    log = tmp_path / "api.log"
    log.write_text("".join(REFUSED.format(s=s) for s in range(5)))
    run = run_components({
        "api": {"kind": "fake", "value": 0.1, "logs": [str(log)], "depends_on": ["db"]},
        "db": {"kind": "fake", "symptom": "db.down", "value": 1},
    })
    errors = with_symptom(run.findings, "logs.error.database")  # one per matching signature
    assert {f.component for f in errors} == {"api"}
    assert max(f.severity.rank for f in errors) == Severity.CRITICAL.rank
    assert all(f.evidence for f in errors)  # counts and redacted examples
    [down] = with_symptom(run.findings, "db.down")
    assert down.root_cause and {f.fingerprint for f in errors} <= set(down.explains)
    assert run.findings[0] is down


def test_database_and_redis_errors_in_one_log_are_explained_by_their_own_store(
        tmp_path: Path) -> None:
    """A log with PostgreSQL and Redis errors, on a service whose database and cache are
    both down: the PostgreSQL lines are explained by the database, the Redis lines by the
    cache, not each by both."""
    log = tmp_path / "api.log"
    redis_line = ("2026-11-22T05:00:{s:02d}Z ERROR redis.exceptions.ConnectionError: Error 111 "
                  "connecting to 127.0.0.1:6379. Connection refused.\n")
    log.write_text("".join(REFUSED.format(s=s) + redis_line.format(s=s) for s in range(5)))
    run = run_components({
        "api": {"kind": "fake", "value": 0.1, "logs": [str(log)], "depends_on": ["db", "cache"]},
        "db": {"kind": "fake", "symptom": "db.down", "value": 1},
        "cache": {"kind": "fake", "symptom": "cache.down", "value": 1},
    })
    by_fp = {f.fingerprint: f.component for f in run.findings}
    errors = [f for f in with_symptom(run.findings, "logs.error.database") if f.is_problem]
    explained = {f.evidence["signature"]: {by_fp[fp] for fp in f.explained_by} for f in errors}
    assert explained.pop("redis.error") == {"cache"}
    assert explained and all(causes == {"db"} for causes in explained.values()), explained


def test_unreadable_log_is_unknown_not_ok(tmp_path: Path) -> None:
    """A log path that does not exist is reported as a check that could not run."""
    run = run_components({"api": {"kind": "fake", "logs": [str(tmp_path / "missing.log")]}})
    failed = with_symptom(run.findings, "stackmedic.check.failed")
    assert failed and failed[0].severity is Severity.UNKNOWN


def test_log_thresholds_can_be_overridden_in_the_stack_file(tmp_path: Path) -> None:
    """`thresholds: logs.error.database` raises the line count needed for a warning."""
    log = tmp_path / "api.log"
    log.write_text("".join(REFUSED.format(s=s) for s in range(3)))
    run = run_components({"api": {"kind": "fake", "logs": [str(log)]}},
                         thresholds={"logs.error.database": {"warning": 10, "critical": 100}})
    errors = with_symptom(run.findings, "logs.error.database")
    assert errors and all(f.severity is Severity.OK for f in errors)


def test_a_pack_from_the_stack_file_adds_signatures(tmp_path: Path) -> None:
    """`log_packs:` on a component adds its signatures to the doctor's log scan."""
    pack = tmp_path / "shop.yaml"
    pack.write_text("""\
pack: shop
description: our own known issues
signatures:
  - id: shop.payment_declined
    symptom: logs.error.payment
    severity: critical
    description: the payment provider declined a charge
    patterns: ['charge [0-9]+ declined by provider']
""")
    log = tmp_path / "api.log"
    log.write_text("2026-11-22T05:00:01Z ERROR charge 4411 declined by provider\n")
    run = run_components({"api": {"kind": "fake", "logs": [str(log)],
                                  "log_packs": [str(pack)]}})
    [payment] = [f for f in with_symptom(run.findings, "logs.error.payment")
                 if f.severity is Severity.CRITICAL]
    assert "shop.payment_declined" in payment.summary


def test_502s_in_a_proxy_access_log_become_an_http_5xx_finding_by_status(
        tmp_path: Path) -> None:
    """A proxy whose nginx access log has 502s (and 200s with 5xx-looking byte counts) gets
    one logs.error.http_5xx warning counting the 502s by status, with the runbook's
    upstream-first remedy."""
    log = tmp_path / "access.log"
    line = ('10.0.0.5 - - [22/Nov/2026:05:00:{s:02d} +0000] "GET /api/orders HTTP/1.1" '
            '{status} 502 "-" "curl/8"\n')
    log.write_text("".join(line.format(s=s, status=502 if s % 3 else 200) for s in range(30)))
    run = run_components({
        "proxy": {"kind": "fake", "logs": [str(log)], "depends_on": ["app"]},
        "app": {"kind": "fake", "symptom": "http.status.error", "value": 1},
    })
    [found] = with_symptom(run.findings, "logs.error.http_5xx")
    [upstream] = with_symptom(run.findings, "http.status.error")
    assert upstream.root_cause and found.fingerprint in upstream.explains
    assert (found.component, found.severity, found.observed) == ("proxy", Severity.WARNING, 20)
    assert found.evidence["by_status"] == {"502": 20}
    assert "502: 20" in found.summary
    assert found.remedy is not None and "upstream" in found.remedy.steps[0]
