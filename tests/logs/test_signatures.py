"""Signature packs, the three matching engines, grep parity and per-signature aggregation."""

from __future__ import annotations

import functools
import gzip
import random
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from stackmedic.errors import ConfigError
from stackmedic.logs import scan as scan_module
from stackmedic.logs.matcher import Matcher, available_engines, make_matcher
from stackmedic.logs.scan import scan_files
from stackmedic.logs.signatures import builtin_pack, load_pack, load_packs, portable_error
from stackmedic.symptoms import catalogue

SIGNATURES = builtin_pack().signatures
PATTERNS = [(i, p) for i, s in enumerate(SIGNATURES) for p in s.patterns]
ENGINES = available_engines()


@functools.cache
def _matcher(engine: str) -> Matcher:
    return make_matcher(PATTERNS, engine)  # hyperscan compiles in ~0.3 s: once per engine


def _matching_signatures(line: str, engine: str) -> set[str]:
    hits = _matcher(engine).scan(line.encode() + b"\n")
    return {SIGNATURES[sig].id for _, _, sig in hits}


def test_every_logs_error_symptom_has_a_signature() -> None:
    """The built-in pack covers every logs.error.* id of the taxonomy."""
    wanted = {s for s in catalogue() if s.startswith("logs.error.")}
    assert wanted == {s.symptom for s in SIGNATURES}


def test_every_signature_has_an_example_and_a_near_miss() -> None:
    """Each signature documents at least one true example and one near miss."""
    assert all(s.examples and s.near_misses for s in SIGNATURES)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("signature", SIGNATURES, ids=lambda s: s.id)
def test_examples_match_and_near_misses_do_not(signature: object, engine: str) -> None:
    """Each true example matches its own signature; each near miss matches no signature."""
    for example in signature.examples:  # type: ignore[attr-defined]
        assert signature.id in _matching_signatures(example, engine), example  # type: ignore[attr-defined]
    for near_miss in signature.near_misses:  # type: ignore[attr-defined]
        assert _matching_signatures(near_miss, engine) == set(), near_miss


@pytest.mark.parametrize(("pattern", "reason"), [
    (r"time\d+", r"'\\d'"), ("[^a]bc", "'[^'"), ("(?i)error", "'(?'"), ("^ERROR", "'^'"),
    ("a*", "empty string"), ("(unclosed", "does not compile")])
def test_patterns_outside_the_portable_subset_are_rejected(pattern: str, reason: str) -> None:
    """Escapes, negated classes, flags, anchors, empty matches and syntax errors fail."""
    problem = portable_error(pattern)
    assert problem is not None and reason in problem


def test_user_pack_loads_and_bad_packs_fail_with_their_name(tmp_path: Path) -> None:
    """A user pack adds signatures; an unknown symptom or a duplicate id is a ConfigError."""
    good = tmp_path / "mine.yaml"
    good.write_text("pack: mine\nsignatures:\n  - id: billing.gateway\n"
                    "    symptom: logs.error.payment\n    description: gateway down\n"
                    "    patterns: ['gateway (refused|unreachable)']\n")
    assert load_packs([str(good)])[-1].id == "billing.gateway"
    bad = tmp_path / "bad.yaml"
    bad.write_text("pack: bad\nsignatures:\n  - id: x\n    symptom: logs.error.nope\n"
                   "    description: d\n    patterns: ['x']\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_pack(bad)
    dup = tmp_path / "dup.yaml"
    dup.write_text(good.read_text().replace("pack: mine", "pack: dup"))
    with pytest.raises(ConfigError, match="billing.gateway"):
        load_packs([str(good), str(dup)])


def _generated_log(path: Path, lines: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    samples = [t for s in SIGNATURES for t in (*s.examples, *s.near_misses)]
    with open(path, "w") as f:
        for i in range(lines):
            body = rng.choice(samples) if rng.random() < 0.1 else \
                f"GET /items/{i} took {rng.randint(1, 900)}ms user=u{i % 97}"
            f.write(f"2024-05-01T10:{(i // 500) % 60:02d}:{i % 60:02d}Z INFO {body}\n")


@pytest.mark.skipif(shutil.which("grep") is None, reason="grep not installed")
def test_matched_line_count_equals_grep_on_every_engine(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The matched-line count equals `LC_ALL=C grep -E -c -f patterns`, for every engine,
    in one process and across worker processes with many small ranges."""
    log, patterns = tmp_path / "gen.log", tmp_path / "patterns.txt"
    _generated_log(log, 8000)
    patterns.write_text("".join(p + "\n" for _, p in PATTERNS))
    grep = subprocess.run(["grep", "-E", "-c", "-f", str(patterns), str(log)],
                          capture_output=True, text=True, env={"LC_ALL": "C"}, check=True)
    expected = int(grep.stdout)
    assert expected > 400
    monkeypatch.setattr(scan_module, "RANGE_BYTES", 256 * 1024)
    monkeypatch.setattr(scan_module, "CHUNK_BYTES", 64 * 1024)
    results = {}
    for engine in ENGINES:
        for workers in (1, 2):
            result = scan_files([log], SIGNATURES, engine=engine, workers=workers,
                                count_lines=workers == 1)
            assert result.matched_lines == expected, (engine, workers)
            results[engine, workers] = [(h.count, h.first_seen, h.last_seen, h.examples,
                                         h.breakdown) for h in result.hits]
    assert len({repr(r) for r in results.values()}) == 1


HTTP_LINES = [  # (line, its 5xx status or None), in the formats http.5xx reads
    ('10.0.0.5 - - [01/May/2024:10:00:01 +0000] "GET /api HTTP/1.1" 502 157 "-" "curl/8"', "502"),
    ('10.0.0.5 - - [01/May/2024:10:00:02 +0500] "GET /r/504 HTTP/1.1" 504 500 "/503" "c"', "504"),
    ('10.0.0.5 - - [01/May/2024:10:00:03 +0500] "GET /r/503 HTTP/1.1" 200 502 "/500" "c"', None),
    ('10.0.0.5 - - [01/May/2024:10:00:04 +0000] "GET /api HTTP/1.1" 404 503 "-" "curl/8"', None),
    ('{"time":"2024-05-01T10:00:05.500Z","status":"503","request_time":0.502}', "503"),
    ('{"time":"2024-05-01T10:00:06.500Z","status":200,"upstream_status":"502, 200"}', None),
    ('{"ts":1714557607.5,"logger":"http.log.access","duration":0.5,"status":500}', "500"),
    ('{"http.status_code": 504, "duration_ms": 500}', "504"),
    ("method=GET path=/500 upstream 500ms status=200 bytes=502", None),
    ("at=error code=H12 path=/ status=503 bytes=0 protocol=https", "503"),
    ('http 2024-05-01T10:00:09.5Z app/lb/50dc 10.1.2.3:2817 10.0.0.1:80 0.500 0.502 0.000 '
     '502 - 34 500 "GET http://shop:80/ HTTP/1.1" "curl/8" - -', "502"),
    ('http 2024-05-01T10:00:10.5Z app/lb/50dc 10.1.2.3:2817 10.0.0.1:80 0.000 0.501 0.000 '
     '200 200 503 502 "GET http://shop:80/500 HTTP/1.1" "curl/8" - -', None),
]


@pytest.mark.parametrize("engine", ENGINES)
def test_http_5xx_lines_are_counted_by_status_on_every_engine(
        tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """http.5xx counts 5xx responses of access logs (combined, JSON, logfmt, ALB) by status;
    a 5xx in a path, referrer, byte count, timestamp, duration or upstream field, or a 4xx,
    is neither counted nor a status; one process and two give the same breakdown."""
    log = tmp_path / "access.log"
    log.write_text("".join(f"{line}\n" for line, _ in HTTP_LINES * 50))
    expected = Counter(status for _, status in HTTP_LINES * 50 if status)
    monkeypatch.setattr(scan_module, "RANGE_BYTES", 8 * 1024)  # several ranges, 2 workers
    for workers in (1, 2):
        result = scan_files([log], SIGNATURES, engine=engine, workers=workers)
        [hits] = [h for h in result.hits if h.signature.id == "http.5xx"]
        assert (hits.count, hits.breakdown) == (sum(expected.values()), expected), workers


def test_a_breakdown_that_does_not_compile_fails_with_the_pack_name(tmp_path: Path) -> None:
    """A signature's breakdown value is checked when the pack loads."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("pack: bad\nsignatures:\n  - id: x\n    symptom: logs.error.http_5xx\n"
                   "    description: d\n    patterns: ['x']\n"
                   "    breakdown: {by: status, value: '5[0-9'}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*breakdown\.value.*does not compile"):
        load_pack(bad)


def test_hits_are_aggregated_per_signature_with_redacted_examples(tmp_path: Path) -> None:
    """Count, first/last minute, per-minute histogram, file:line examples, secrets masked."""
    log = tmp_path / "app.log"
    log.write_text(
        "2024-05-01T10:00:05Z INFO ok\n"
        "2024-05-01T10:00:06Z ERROR FATAL:  sorry, too many clients already\n"
        "2024-05-01T10:01:07Z ERROR could not connect to server postgresql://app:hunter22@db/app\n"
        "2024-05-01T10:02:08Z ERROR FATAL:  sorry, too many clients already\n")
    result = scan_files([log], SIGNATURES, workers=1)
    uncounted = scan_files([log], SIGNATURES, workers=1, count_lines=False)
    assert [h.examples for h in uncounted.hits] == [h.examples for h in result.hits]
    by_id = {h.signature.id: h for h in result.hits}
    slots = by_id["pool.db_slots"]
    assert (slots.count, slots.first_seen, slots.last_seen) == (
        2, "2024-05-01T10:00Z", "2024-05-01T10:02Z")
    assert dict(slots.per_minute) == {"2024-05-01T10:00Z": 1, "2024-05-01T10:02Z": 1}
    assert [e["line"] for e in slots.examples] == [2, 4]
    example = by_id["db.connection_failed"].examples[0]
    assert example["line"] == 3 and "hunter22" not in example["text"]
    assert result.matched_lines == 3 and result.stats.lines == 4


def test_a_truncated_gzip_is_scanned_up_to_the_damage(tmp_path: Path) -> None:
    """A cut .gz file yields the hits before the cut and a warning, not an exception."""
    body = b"".join(b"2024-05-01T10:00:00Z ERROR deadlock detected\n" for _ in range(50000))
    whole = gzip.compress(body)
    log = tmp_path / "app.log.1.gz"
    log.write_bytes(whole[: len(whole) // 2])
    result = scan_files([log], SIGNATURES, workers=1)
    hits = {h.signature.id: h.count for h in result.hits}
    assert 0 < hits["conflict.serialization"] < 50000
    assert result.stats.truncated_files == [str(log)]


def test_an_unreadable_file_is_reported_not_raised(tmp_path: Path) -> None:
    """A path that cannot be opened for reading (a directory named like a log) is listed
    as unreadable; the other files are still scanned."""
    good = tmp_path / "good.log"
    good.write_text("ERROR deadlock detected\n")
    bad = tmp_path / "bad.log"
    bad.mkdir()
    result = scan_files([bad, good], SIGNATURES, workers=1)
    assert result.stats.unreadable == [str(bad)]
    assert result.matched_lines == 1


def test_a_giant_line_without_newlines_is_cut_not_loaded(tmp_path: Path) -> None:
    """A log preallocated with 300 MB of NULs and no newline between two real lines: the
    signature scan and the template miner both finish under a 250 MB address-space
    limit (the giant line is cut at `LONG_LINE` and the rest skipped), and the line
    counts and hits stay right."""
    import sys

    log = tmp_path / "prealloc.log"
    with open(log, "wb") as f:
        f.write(b"2024-05-01T10:00:00Z ERROR deadlock detected\n")
        f.seek(300 << 20, 1)  # a sparse hole: NUL bytes that take no disk space
        f.write(b"\n2024-05-01T10:00:01Z ERROR deadlock detected\n")
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (250 << 20, 250 << 20))\n"
        "from stackmedic.logs.scan import scan_files\n"
        "from stackmedic.logs.signatures import load_packs\n"
        "from stackmedic.logs.source import mine_paths\n"
        "r = scan_files([sys.argv[1]], load_packs(), workers=1)\n"
        "mined, _ = mine_paths([sys.argv[1]], per_line=True)\n"
        "print(r.matched_lines, r.stats.lines, len(mined.assignments))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.split() == ["2", "3", "3"]



@pytest.mark.parametrize("engine", ENGINES)
def test_a_line_counts_under_the_most_specific_signature_only(tmp_path: Path,
                                                              engine: str) -> None:
    """"too many clients" through psycopg matches three signatures; it counts as a
    connection-pool problem only, while a plain driver error still counts as one, the
    matched-line count is unchanged, and one worker or two agree."""
    log = tmp_path / "api.log"
    slots = ('2024-05-01T10:00:{s:02d}Z ERROR psycopg.OperationalError: connection failed: '
             'FATAL:  sorry, too many clients already\n')
    driver = ('2024-05-01T10:01:{s:02d}Z ERROR sqlalchemy.exc.ProgrammingError: relation '
              '"orders" does not exist\n')
    log.write_text("".join(slots.format(s=s) + driver.format(s=s) for s in range(7)))
    counts = []
    for workers in (1, 2):
        result = scan_files([log], SIGNATURES, engine=engine, workers=workers)
        counts.append({h.signature.id: h.count for h in result.hits if h.count})
        assert result.matched_lines == 14
    assert counts[0] == counts[1] == {"pool.db_slots": 7, "db.driver_error": 7}, counts


def test_superseding_an_unknown_signature_is_refused(tmp_path: Path) -> None:
    pack = tmp_path / "mine.yaml"
    pack.write_text("pack: mine\nsignatures:\n  - id: mine.oops\n"
                    "    symptom: logs.error.database\n    description: d\n"
                    "    patterns: ['oops']\n    supersedes: [db.driver_eror]\n")
    with pytest.raises(ConfigError, match="supersedes unknown signature 'db.driver_eror'"):
        load_packs([str(pack)])


def test_a_breakdown_by_a_value_per_line_stays_bounded(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A pack breaking lines down by a request id keeps at most MAX_BREAKDOWN_VALUES
    values per process; the rest count as `other`, and every line is still counted."""
    monkeypatch.setattr(scan_module, "MAX_BREAKDOWN_VALUES", 50)
    pack = tmp_path / "ids.yaml"
    pack.write_text("pack: ids\nsignatures:\n  - id: ids.failed\n"
                    "    symptom: logs.error.payment\n    description: d\n"
                    "    patterns: ['request [0-9]+ failed']\n"
                    "    breakdown: {by: request, value: '[0-9]+'}\n")
    log = tmp_path / "pay.log"
    log.write_text("".join(f"request {i} failed\n" for i in range(500)))
    [hits] = [h for h in scan_files([log], load_packs([str(pack)], builtin=False),
                                    workers=1).hits if h.count]
    assert hits.count == 500 and sum(hits.breakdown.values()) == 500
    assert len(hits.breakdown) <= 51 and hits.breakdown["other"] >= 450
