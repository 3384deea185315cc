"""From log files to findings: spikes, N+1, new templates, and real PostgreSQL logs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stackmedic.findings import Finding, Severity
from stackmedic.logs.diagnose import LogOptions, logs_findings
from stackmedic.logs.spikes import SpikeSettings, find_spikes
from stackmedic.testing import with_symptom

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def _write_minutes(path: Path, errors_per_minute: list[int]) -> None:
    with open(path, "w") as f:
        for minute, errors in enumerate(errors_per_minute):
            for second in range(30):
                at = START + timedelta(minutes=minute, seconds=second)
                f.write(f"{at:%Y-%m-%d %H:%M:%S},000 INFO app: request ok\n")
            for i in range(errors):
                at = START + timedelta(minutes=minute, seconds=30 + i % 30)
                f.write(f"{at:%Y-%m-%d %H:%M:%S},000 ERROR app: request failed code={i}\n")


def _one(findings: list[Finding], symptom: str) -> Finding:
    found = with_symptom(findings, symptom)
    assert len(found) == 1, [f.summary for f in found]
    return found[0]


def test_error_spike_is_found_with_window_rate_and_baseline(tmp_path: Path) -> None:
    """Steady 1-3 errors a minute, then 60 in one minute: a critical spike at that minute."""
    log = tmp_path / "app.log"
    _write_minutes(log, [1, 2, 3, 1, 2, 2, 1, 3, 2, 1, 60, 2])
    spike = _one(logs_findings([log], "api", LogOptions(workers=1)), "logs.error_rate.spike")
    assert spike.severity is Severity.CRITICAL
    assert spike.evidence["window_start"] == "2024-05-01T10:10:00Z"
    assert spike.evidence["count"] == 60 and spike.evidence["baseline"] == 2
    assert spike.component == "api" and spike.check.startswith("logs.")
    assert spike.remedy is not None and spike.remedy.runbook == "logs.error_rate.spike"
    assert "2024-05-01T10:10:00Z" in spike.summary


def test_steady_errors_are_not_a_spike(tmp_path: Path) -> None:
    """A constant error rate, however high, gives an ok spike finding with observed 0."""
    log = tmp_path / "app.log"
    _write_minutes(log, [20] * 12)
    spike = _one(logs_findings([log], "api", LogOptions(workers=1)), "logs.error_rate.spike")
    assert spike.severity is Severity.OK and spike.observed == 0


def test_median_and_mad_ignore_an_earlier_burst() -> None:
    """One past burst does not raise the baseline enough to hide the next real spike."""
    counts = Counter(dict.fromkeys(range(20), 2))
    counts[5] = 200
    counts[15] = 40
    spikes = find_spikes(counts, SpikeSettings(min_count=10))
    assert [s.window_start.minute for s in spikes] == [5, 15]
    assert spikes[1].baseline == 2


def test_n_plus_one_from_sqlalchemy_echo_json_lines(tmp_path: Path) -> None:
    """SQLAlchemy echo lines in JSON logs, grouped by request_id: the repeated template."""
    log = tmp_path / "app.jsonl"
    rows: list[dict[str, Any]] = []
    for request, n in (("req-a", 25), ("req-b", 3)):
        rows.append({"time": "2024-05-01T10:00:00Z", "level": "info", "request_id": request,
                     "message": "sqlalchemy.engine.Engine SELECT orders.id FROM orders "
                                "WHERE orders.user_id = %(user_id)s"})
        rows += [{"time": "2024-05-01T10:00:01Z", "level": "info", "request_id": request,
                  "message": f"sqlalchemy.engine.Engine SELECT items.id, items.name FROM items "
                             f"WHERE items.order_id = {i}"} for i in range(n)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    finding = _one(logs_findings([log], "api", LogOptions(workers=1)), "logs.pattern.n_plus_one")
    assert finding.severity is Severity.WARNING
    assert finding.evidence["template"] == \
        "SELECT items.id, items.name FROM items WHERE items.order_id = ?"
    assert (finding.evidence["request"], finding.evidence["count"]) == ("req-a", 25)
    assert finding.evidence["requests"] == 1


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stackmedic.logs", *args],
                          capture_output=True, text=True, timeout=120)


def test_new_error_template_against_a_saved_baseline(tmp_path: Path) -> None:
    """Errors whose template is in the baseline are known; a new error message is reported
    once, with its count and an example."""
    before, after, baseline = tmp_path / "before.log", tmp_path / "after.log", tmp_path / "b.json"
    known = [f"2024-05-01 10:00:{i:02d},000 ERROR app: upstream 10.0.0.{i} refused" for i in
             range(20)]
    before.write_text("\n".join(known) + "\n")
    assert _run_cli("templates", str(before), "--save-baseline", str(baseline)).returncode == 0
    new = [f"2024-05-01 11:00:{i:02d},000 ERROR app: ledger mismatch for account {i}" for i in
           range(7)]
    after.write_text("\n".join(known[:5] + new) + "\n")
    findings = logs_findings([after], "api", LogOptions(baseline=str(baseline), workers=1))
    found = _one(findings, "logs.template.new")
    assert found.evidence["template"] == "app: ledger mismatch for account <*>"
    assert found.observed == 7 and found.severity is Severity.WARNING


def test_scan_command_prints_json_findings_and_exits_with_the_worst_severity(
        tmp_path: Path) -> None:
    """`logs scan --format json` prints findings; the exit code follows Nagios."""
    log = tmp_path / "app.log"
    log.write_text("2024-05-01 10:00:00,000 ERROR app: FATAL:  sorry, too many clients already\n")
    proc = _run_cli("scan", str(log), "--format", "json", "--component", "web")
    findings = json.loads(proc.stdout)
    pool = [f for f in findings if f["symptom"] == "logs.error.connection_pool"]
    assert pool[0]["severity"] == "critical" and pool[0]["component"] == "web"
    assert pool[0]["remedy"]["steps"]
    assert proc.returncode == 2


def test_missing_log_file_is_unknown_not_ok(tmp_path: Path) -> None:
    """A configured log path that does not exist gives one unknown finding, with steps
    for a path (not a slow collector's), and no 'ok' verdicts about logs never read;
    beside a readable log, the verdicts about that one stay."""
    missing = tmp_path / "nope.log"
    [finding] = logs_findings([missing], "api", LogOptions(workers=1))
    assert finding.severity is Severity.UNKNOWN and "nope.log" in json.dumps(finding.evidence)
    assert finding.remedy is not None and f"ls -ld {missing}" in finding.remedy.steps[0]
    readable = tmp_path / "ok.log"
    readable.write_text("2024-05-01T10:00:00Z INFO started\n")
    findings = logs_findings([readable, missing], "api", LogOptions(workers=1))
    assert len([f for f in findings if f.severity is Severity.UNKNOWN]) == 1
    assert any(f.severity is Severity.OK for f in findings)


def _connect(dsn: str, application_name: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, application_name=application_name, connect_timeout=10,
                           autocommit=True)


def test_real_postgres_log_shows_pool_exhaustion_and_n_plus_one(
        pg_factory: Callable[..., Any]) -> None:
    """A real PostgreSQL with max_connections=5 and log_statement=all: exhausting its
    slots and running one query per item appear as connection_pool and N+1 findings."""
    import psycopg

    server = pg_factory(settings={"max_connections": "5", "log_statement": "all",
                                  "log_line_prefix": "'%m [%p] request_id=%a '"})
    held = []
    try:
        with pytest.raises(psycopg.OperationalError):
            for i in range(6):
                held.append(_connect(server.dsn(), f"hold-{i}"))
    finally:
        for conn in held:
            conn.close()
    with _connect(server.dsn(), "req-42") as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        for i in range(15):
            conn.execute(f"SELECT name FROM items WHERE id = {i}")
    log = server.dir / "server.log"
    findings = logs_findings([log], "db", LogOptions(workers=1))
    pool = with_symptom(findings, "logs.error.connection_pool")
    assert pool and pool[0].severity is Severity.CRITICAL
    assert "too many clients" in pool[0].evidence["example"]
    n1 = _one(findings, "logs.pattern.n_plus_one")
    assert n1.evidence["template"] == "SELECT name FROM items WHERE id = ?"
    assert (n1.evidence["request"], n1.evidence["count"]) == ("req-42", 15)


def test_tail_command_summarises_lines_written_while_it_runs(tmp_path: Path) -> None:
    """`logs tail --from-start` reports the lines, errors and signature hits it follows."""
    log = tmp_path / "app.log"
    log.write_text("2024-05-01 10:00:00,000 INFO app: ok\n"
                   "2024-05-01 10:00:01,000 ERROR app: deadlock detected\n")
    proc = _run_cli("tail", str(log), "--from-start", "--interval", "0.5", "--duration", "4")
    assert proc.returncode == 0, proc.stderr
    # The two lines may fall into one interval or two: add the intervals up.
    summaries = [line for line in proc.stdout.splitlines() if "lines=" in line]
    total = Counter()
    for line in summaries:
        for part in line.split()[1:]:
            key, _, value = part.partition("=")
            total[key] += int(value)
    assert (total["lines"], total["errors"], total["conflict.serialization"]) == (2, 1, 1)


def test_a_signature_that_spikes_gets_its_own_spike_finding(tmp_path: Path) -> None:
    """Pool exhaustion lines jumping from 1 to 40 a minute: a spike naming the signature."""
    log = tmp_path / "app.log"
    with open(log, "w") as f:
        for minute, count in enumerate([1, 1, 1, 1, 1, 40]):
            for i in range(count):
                at = START + timedelta(minutes=minute, seconds=i % 60)
                f.write(f"{at:%Y-%m-%d %H:%M:%S},000 INFO app: QueuePool limit of size 5 "
                        f"overflow 10 reached, connection timed out\n")
    spikes = [f for f in with_symptom(logs_findings([log], "api", LogOptions(workers=1)),
                                      "logs.error_rate.spike") if f.is_problem]
    assert {f.evidence.get("signature") for f in spikes} >= {"pool.client_exhausted"}
    pool = next(f for f in spikes if f.evidence.get("signature") == "pool.client_exhausted")
    assert pool.evidence["window_start"] == "2024-05-01T10:05:00Z"
    assert pool.severity is Severity.CRITICAL


def _placeholders(symptom: str) -> set[str]:
    import re

    from stackmedic.runbooks import load_runbook

    return set(re.findall(r"\{evidence\.(\w+)\}", load_runbook(symptom)))


def test_every_runbook_placeholder_is_filled_from_the_evidence(tmp_path: Path) -> None:
    """For each problem the log checks report (signature, spike, N+1, new template), the
    evidence has every `{evidence.key}` its runbook uses, so no command is left with a
    `<key>` or LOGFILE hole; the spike's grep string is spelled as the log spells time."""
    log, baseline = tmp_path / "app.log", tmp_path / "base.json"
    _write_minutes(log, [1, 2, 3, 1, 2, 2, 1, 3, 2, 1, 60, 2])
    with open(log, "a") as f:
        f.write("2024-05-01 10:12:00,000 ERROR app: FATAL:  sorry, too many clients already\n")
        f.writelines(f"2024-05-01 10:12:01,000 INFO app: statement: SELECT name FROM items "
                     f"WHERE id = {i} request_id=req-9\n" for i in range(12))
    baseline.write_text(json.dumps({"version": 1, "templates": []}))
    findings = logs_findings([log], "api", LogOptions(workers=1, baseline=str(baseline)))
    problems = [f for f in findings if f.is_problem]
    assert {f.symptom for f in problems} >= {"logs.error.connection_pool",
                                             "logs.error_rate.spike",
                                             "logs.pattern.n_plus_one", "logs.template.new"}
    for finding in problems:
        missing = _placeholders(finding.symptom) - set(finding.evidence)
        assert not missing, (finding.symptom, missing)
        assert finding.remedy is not None
        assert not any("LOGFILE" in step or "<file>" in step for step in finding.remedy.steps)
    spike = next(f for f in problems if f.symptom == "logs.error_rate.spike")
    assert spike.evidence["file"] == str(log)
    minute = spike.evidence["log_minute"]
    grep = subprocess.run(["grep", "-c", "-F", minute, str(log)], capture_output=True,
                          text=True, check=False)
    assert int(grep.stdout) >= 60, minute
    new = next(f for f in problems if f.symptom == "logs.template.new")
    assert new.evidence["file"] == str(log)


def test_secrets_in_a_new_error_template_are_redacted_everywhere(tmp_path: Path) -> None:
    """A password every line repeats is a constant to the miner; it is masked in the
    finding, in the saved baseline and in the `templates` output."""
    log, baseline = tmp_path / "app.log", tmp_path / "base.json"
    log.write_text("".join(f"2024-05-01 10:00:{i:02d},000 ERROR app: login failed for "
                           f"password=hunter2secret attempt {i}\n" for i in range(8)))
    saved = _run_cli("templates", str(log), "--save-baseline", str(baseline), "--format",
                     "jsonl")
    assert saved.returncode == 0, saved.stderr
    assert "hunter2secret" not in saved.stdout + baseline.read_text()
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"version": 1, "templates": []}))
    new = _one(logs_findings([log], "api", LogOptions(workers=1, baseline=str(empty))),
               "logs.template.new")
    assert new.is_problem
    assert "hunter2secret" not in json.dumps(new.to_dict())
    known = logs_findings([log], "api", LogOptions(workers=1, baseline=str(baseline)))
    assert not _one(known, "logs.template.new").is_problem  # the redacted baseline still fits


def test_an_unreadable_log_path_says_why(tmp_path: Path) -> None:
    """A directory configured as a log file is unknown, and the evidence says why, which
    fills the `{evidence.error}` of the check-failed runbook."""
    folder = tmp_path / "app.log"
    folder.mkdir()
    failed = _one(logs_findings([folder], "api", LogOptions(workers=1)),
                  "stackmedic.check.failed")
    assert failed.severity is Severity.UNKNOWN
    assert "directory" in failed.evidence["error"]
    assert failed.remedy is not None and not any("<error>" in s for s in failed.remedy.steps)


@pytest.mark.parametrize(("args", "words"), [
    (["--baseline", "BAD.json"], "not a template baseline"),
    (["--pack", "BAD.yaml"], "signature pack"),
    (["--window", "0"], "--window"),
])
def test_scan_rejects_bad_options_in_one_line_without_a_traceback(
        tmp_path: Path, args: list[str], words: str) -> None:
    """A corrupt baseline, a broken pack or a zero window: a short reason on stderr and a
    non-zero exit, never a Python traceback."""
    log = tmp_path / "app.log"
    log.write_text("2024-05-01 10:00:00,000 ERROR app: boom\n")
    (tmp_path / "BAD.json").write_text("not json")
    (tmp_path / "BAD.yaml").write_text("pack: [")
    args = [str(tmp_path / a) if a.startswith("BAD") else a for a in args]
    proc = _run_cli("scan", str(log), *args)
    assert proc.returncode in (2, 3) and "Traceback" not in proc.stderr
    assert words in proc.stderr


def test_one_far_away_timestamp_does_not_blow_up_spike_detection() -> None:
    """Errors stamped at epoch 0 and far ahead (bad clocks): spike detection visits only
    the windows with errors, so it finishes within a 400 MB address-space limit (a dense
    series over every empty minute in between would need gigabytes)."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (400 << 20, 400 << 20))\n"
        "from collections import Counter\n"
        "from stackmedic.logs.spikes import find_spikes\n"
        "start = 250_000_000_000 // 60  # the year 9892, in minutes\n"
        "counts = Counter({0: 1, **{start + i: 2 for i in range(20)}})\n"
        "counts[start + 20] = 80\n"
        "spikes = find_spikes(counts)\n"
        "assert [s.count for s in spikes] == [80], spikes\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]


def test_tail_from_start_holds_a_bounded_number_of_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tail --from-start` on a file larger than the line queue: the reader waits for the
    summaries instead of loading the whole file, so no interval sees more than the bound
    (plus the few lines put while a summary drains)."""
    from stackmedic.logs import live

    monkeypatch.setattr(live, "QUEUE_LINES", 50)
    log = tmp_path / "big.log"
    log.write_text("".join(f"2024-05-01 10:00:00,000 INFO app: line {i}\n" for i in range(5000)))
    summaries = list(live.tail_summary([str(log)], interval=0.3, duration=1.5, from_start=True))
    counts = [int(s.split("lines=")[1].split()[0]) for s in summaries if "lines=" in s]
    assert counts and sum(counts) > 0
    assert max(counts) <= 200, counts


def test_n_plus_one_reads_multi_line_sqlalchemy_echo_whole(tmp_path: Path) -> None:
    """SQLAlchemy echo spreads a statement over lines; two queries that share their first
    line (`SELECT count(*) AS count_1`) but not their FROM are two templates, so 8 + 8
    of them are no N+1, while 12 of one are, named with FROM and WHERE."""
    from stackmedic.logs.formats import Record
    from stackmedic.logs.nplusone import sql_of

    log = tmp_path / "app.log"
    rows = []
    for i in range(8):
        for table in ("orders", "items"):
            rows.append(f"2024-05-01 10:00:00,{i:03d} INFO [request_id=req-1] sqlalchemy.engine."
                        f"Engine SELECT count(*) AS count_1 \nFROM {table} \n"
                        f"WHERE {table}.user_id = %(user_id_1)s\n")
    log.write_text("".join(rows))
    assert not _one(logs_findings([log], "api", LogOptions(workers=1)),
                    "logs.pattern.n_plus_one").is_problem
    with open(log, "a") as f:
        f.writelines(f"2024-05-01 10:00:01,{i:03d} INFO [request_id=req-2] "
                     f"sqlalchemy.engine.Engine SELECT items.id \nFROM items \n"
                     f"WHERE items.order_id = %(order_id_1)s\n"
                     for i in range(12))
    n1 = _one(logs_findings([log], "api", LogOptions(workers=1)), "logs.pattern.n_plus_one")
    assert n1.evidence["template"] == "SELECT items.id FROM items WHERE items.order_id = ?"
    assert (n1.evidence["request"], n1.evidence["count"]) == ("req-2", 12)
    colon = Record("", 1, "", "sqlalchemy.engine.Engine:SELECT 1 FROM t")  # Python default
    assert sql_of(colon) == "SELECT 1 FROM t"
