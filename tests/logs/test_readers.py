"""Readers, formats and multi-line records: every kind of bad input, every layout."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stackmedic.logs.formats import detect
from stackmedic.logs.readers import ReadStats, follow, read_lines, rotated_set
from stackmedic.logs.source import iter_records


def _lines(path: Path, stats: ReadStats | None = None) -> list[str]:
    return [text for _, _, text in read_lines([path], stats)]


def test_invalid_utf8_is_replaced_counted_and_warned(tmp_path: Path) -> None:
    """Invalid UTF-8 becomes U+FFFD, every line is still read, one warning says so."""
    path = tmp_path / "bad.log"
    path.write_bytes(b"ok one\nbad \xff\xfe here\nok three\n")
    stats = ReadStats()
    lines = _lines(path, stats)
    assert lines == ["ok one", "bad \ufffd\ufffd here", "ok three"]
    assert (stats.lines, stats.invalid_utf8) == (3, 1)
    assert len(stats.warnings) == 1 and "UTF-8" in stats.warnings[0]


def test_nul_bytes_are_dropped_and_counted(tmp_path: Path) -> None:
    """NUL bytes (a preallocated or crashed log) are removed; the text around them stays."""
    path = tmp_path / "nul.log"
    path.write_bytes(b"before\n\0\0\0\0after crash\nnext\n")
    stats = ReadStats()
    assert _lines(path, stats) == ["before", "after crash", "next"]
    assert stats.nul_lines == 1 and stats.lines == 3


def test_a_10_mb_line_is_cut_and_the_next_line_is_intact(tmp_path: Path) -> None:
    """A 10 MB single line is cut to the cap, counted once, and the next line reads fine."""
    path = tmp_path / "long.log"
    with open(path, "wb") as f:
        f.write(b"first\n" + b"x" * (10 * 1024 * 1024) + b"\nlast line\n")
    stats = ReadStats()
    lines = _lines(path, stats)
    assert len(lines) == 3
    assert lines[0] == "first" and lines[2] == "last line"
    assert len(lines[1]) == 1 << 20
    assert stats.long_lines == 1 and stats.lines == 3


def test_truncated_gzip_yields_what_was_readable_and_warns(tmp_path: Path) -> None:
    """A gzip cut mid-stream gives its readable lines, one warning, and no exception."""
    body = "".join(f"line {i} {'pad' * 20}\n" for i in range(20000)).encode()
    whole = gzip.compress(body)
    path = tmp_path / "app.log.1.gz"
    path.write_bytes(whole[: len(whole) // 2])
    stats = ReadStats()
    lines = _lines(path, stats)
    assert 0 < len(lines) < 20000
    assert all(line.startswith("line ") for line in lines[:-1])
    assert stats.truncated_files == [str(path)]
    assert any("truncated" in w for w in stats.warnings)


@pytest.mark.parametrize(("suffix", "compress"), [
    (".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)])
def test_compressed_files_are_read(tmp_path: Path, suffix: str, compress: object) -> None:
    """.gz, .bz2 and .xz files read like plain ones."""
    path = tmp_path / f"app.log{suffix}"
    path.write_bytes(compress(b"a\nb\n"))  # type: ignore[operator]
    assert _lines(path) == ["a", "b"]


def test_rotated_set_is_read_oldest_first(tmp_path: Path) -> None:
    """app.log.2.gz, then app.log.1, then app.log; unrelated files are ignored."""
    (tmp_path / "app.log").write_text("newest\n")
    (tmp_path / "app.log.1").write_text("middle\n")
    (tmp_path / "app.log.2.gz").write_bytes(gzip.compress(b"oldest\n"))
    (tmp_path / "app.log.bak").write_text("ignored\n")
    (tmp_path / "app.login").write_text("ignored\n")
    order = [p.name for p in rotated_set(tmp_path / "app.log")]
    assert order == ["app.log.2.gz", "app.log.1", "app.log"]
    messages = [r.message for r in iter_records([tmp_path / "app.log"])]
    assert messages == ["oldest", "middle", "newest"]


def test_python_traceback_is_joined_to_its_header(tmp_path: Path) -> None:
    """A traceback after an ISO-timestamped ERROR line is one record with that level."""
    path = tmp_path / "py.log"
    path.write_text(
        "2024-05-01 10:00:00,001 INFO app: started\n"
        "2024-05-01 10:00:01,002 ERROR app: request failed\n"
        "Traceback (most recent call last):\n"
        '  File "/app/x.py", line 3, in handler\n'
        "    db.execute(q)\n"
        "psycopg.OperationalError: connection refused\n"
        "2024-05-01 10:00:02,003 INFO app: next\n")
    records = list(iter_records([path]))
    assert [r.level for r in records] == ["info", "error", "info"]
    assert records[1].message.endswith("psycopg.OperationalError: connection refused")
    assert records[1].line == 2 and records[2].line == 7
    assert records[1].time is not None and records[1].time.isoformat().startswith("2024-05-01")


def test_java_stack_trace_and_go_panic_join_without_a_header(tmp_path: Path) -> None:
    """In a plain log, Java `at`/`Caused by` lines and a Go panic's goroutine dump join."""
    path = tmp_path / "plain.log"
    path.write_text(
        "starting worker\n"
        "java.lang.IllegalStateException: pool closed\n"
        "\tat com.acme.Pool.get(Pool.java:42)\n"
        "Caused by: java.io.IOException: broken pipe\n"
        "\t... 3 more\n"
        "panic: runtime error: index out of range\n"
        "\n"
        "goroutine 1 [running]:\n"
        "main.main()\n"
        "\t/app/main.go:12 +0x1d\n"
        "exit status 2\n"
        "done\n")
    messages = [r.message.splitlines()[0] for r in iter_records([path])]
    assert messages == ["starting worker", "java.lang.IllegalStateException: pool closed",
                        "panic: runtime error: index out of range", "done"]


def test_json_lines_give_time_level_message_and_request_id(tmp_path: Path) -> None:
    """structlog/loguru/ECS-style JSON lines are parsed, nested ECS keys included."""
    path = tmp_path / "app.jsonl"
    rows = [
        {"timestamp": "2024-05-01T10:00:00Z", "level": "info", "event": "hello",
         "request_id": "r1"},
        {"@timestamp": "2024-05-01T10:00:01.5Z", "log": {"level": "ERROR"},
         "message": "db down", "trace": {"id": "t9"}},
        {"time": 1714557602, "levelname": "WARNING", "msg": "slow"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = list(iter_records([path]))
    assert [(r.level, r.message, r.request_id) for r in records] == [
        ("info", "hello", "r1"), ("error", "db down", "t9"), ("warning", "slow", None)]
    assert all(r.time is not None for r in records)


def test_logfmt_lines_are_parsed(tmp_path: Path) -> None:
    """logfmt pairs give level, quoted message and request id."""
    path = tmp_path / "app.logfmt"
    path.write_text('ts=2024-05-01T10:00:00Z level=error msg="pool exhausted" '
                    "request_id=abc\nts=2024-05-01T10:00:01Z level=info msg=ok\n")
    records = list(iter_records([path]))
    assert [(r.level, r.message, r.request_id) for r in records] == [
        ("error", "pool exhausted", "abc"), ("info", "ok", None)]


@pytest.mark.parametrize(("line", "layout", "level", "message"), [
    ("2024-05-01T10:00:00.123Z ERROR [main] c.a.Svc - boom", "iso", "error",
     "[main] c.a.Svc - boom"),
    ("May  1 10:00:00 web1 sshd[42]: Failed password", "syslog", None, "Failed password"),
    ('1.2.3.4 - - [01/May/2024:10:00:00 +0000] "GET / HTTP/1.1" 502 12 "-" "curl"', "access",
     "error", '"GET / HTTP/1.1" 502 12 "-" "curl"'),
    ("2024/05/01 10:00:00 [error] 7#7: *3 upstream timed out", "nginx-error", "error",
     "upstream timed out"),
    ("ERROR:    Exception in ASGI application", "uvicorn", "error",
     "Exception in ASGI application"),
    ('INFO:     127.0.0.1:5000 - "GET /orders HTTP/1.1" 503 Service Unavailable', "uvicorn",
     "error", '127.0.0.1:5000 - "GET /orders HTTP/1.1" 503 Service Unavailable'),
    ('INFO:     127.0.0.1:5000 - "GET /me HTTP/1.1" 401 Unauthorized', "uvicorn",
     "warning", '127.0.0.1:5000 - "GET /me HTTP/1.1" 401 Unauthorized'),
    ("[2024-05-01 10:00:00 +0000] [42] [CRITICAL] WORKER TIMEOUT (pid:43)", "iso", "critical",
     "[42] [CRITICAL] WORKER TIMEOUT (pid:43)"),
    ("[2024-05-01 10:00:00 +0200] [42] [ERROR] Worker (pid:43) was sent SIGKILL!", "iso",
     "error", "[42] [ERROR] Worker (pid:43) was sent SIGKILL!"),
    ("2024-05-01 10:00:00,123 [main] ERROR com.acme.Pool - no connection", "iso", "error",
     "[main] ERROR com.acme.Pool - no connection"),
    ("2024-05-01 10:00:00,123 - app.db - ERROR - pool exhausted", "iso", "error",
     "- app.db - ERROR - pool exhausted"),
    ("2024-05-01 10:00:00.123 UTC [42] FATAL:  too many clients already", "iso", "critical",
     "[42] FATAL:  too many clients already"),
])
def test_header_layouts_are_detected(line: str, layout: str, level: str | None,
                                     message: str) -> None:
    """Common header layouts are recognised and give level and message."""
    chosen = detect([line] * 5)
    assert chosen.name == layout
    record = chosen.parse(line)
    assert record is not None
    assert (record.level, record.message) == (level, message)
    assert record.time is not None or layout == "uvicorn"


def test_gunicorn_time_keeps_its_offset_and_a_level_word_in_the_text_is_not_a_level() -> None:
    """Gunicorn's `[… +0200]` stamp is converted to UTC; an upper-case level word inside
    the message text (after a logger name) does not make the line an error."""
    stamp = detect(["[2024-05-01 10:00:00 +0200] [1] [INFO] Booting"] * 3).parse(
        "[2024-05-01 10:00:00 +0200] [1] [INFO] Booting")
    assert stamp is not None and stamp.time is not None and stamp.time.hour == 8
    line = "2024-05-01 10:00:00,123 [main] app: ERROR count is 3"
    record = detect([line] * 3).parse(line)
    assert record is not None and record.level is None


def test_lines_without_a_common_header_are_plain() -> None:
    """Free text (the loghub message files) is plain: each line is its own message."""
    assert detect(["PacketResponder 1 terminating", "Served block blk_1 to /10.0.0.1",
                   "Verification succeeded"]).name == "plain"


def _collect(gen: Iterator[str], out: list[str], done: threading.Event) -> None:
    for line in gen:
        out.append(line)
    done.set()


def _wait_for(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.02)


def test_follow_survives_rotation_and_truncation(tmp_path: Path) -> None:
    """`follow` reads appended lines, the new file after a rename rotation, and the
    file again from its start after truncation."""
    path = tmp_path / "live.log"
    path.write_text("old line\n")
    got: list[str] = []
    stop, done = threading.Event(), threading.Event()
    stats = ReadStats()
    thread = threading.Thread(target=_collect, args=(
        follow(path, poll=0.02, from_start=True, stop=stop.is_set, stats=stats), got, done),
        daemon=True)
    thread.start()
    _wait_for(lambda: got == ["old line"])
    with open(path, "a") as f:
        f.write("one\n")
    _wait_for(lambda: got == ["old line", "one"])
    path.rename(tmp_path / "live.log.1")
    path.write_text("two\n")
    _wait_for(lambda: got == ["old line", "one", "two"])
    path.write_text("")
    _wait_for(lambda: any("truncated" in w for w in stats.warnings))
    with open(path, "a") as f:
        f.write("three\n")
    _wait_for(lambda: got == ["old line", "one", "two", "three"])
    stop.set()
    done.wait(10)
    assert got == ["old line", "one", "two", "three"]
    assert any("rotated" in w for w in stats.warnings)


def test_record_budget_reads_only_the_newest_whole_lines(tmp_path: Path) -> None:
    """With a byte budget, older rotated files are skipped and reading starts at a line
    boundary inside the oldest file still needed."""
    (tmp_path / "app.log.1").write_text("".join(f"old {i:04d}\n" for i in range(100)))
    (tmp_path / "app.log").write_text("".join(f"new {i:04d}\n" for i in range(10)))
    messages = [r.message for r in iter_records([tmp_path / "app.log"], budget=100)]
    assert messages[-10:] == [f"new {i:04d}" for i in range(10)]
    assert messages[:-10] == ["old 0099"]  # the 10 bytes left hold one whole line


def test_absolute_and_home_globs_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`/var/log/app/*.log` (absolute) and `~/logs/*.log` patterns expand to their files,
    sorted, with rotated siblings; a pattern matching nothing gives nothing."""
    from stackmedic.logs.readers import expand

    (tmp_path / "b.log").write_text("b\n")
    (tmp_path / "a.log").write_text("a\n")
    (tmp_path / "a.log.1").write_text("a1\n")
    assert [p.name for p in expand([str(tmp_path / "*.log")])] == ["a.log.1", "a.log", "b.log"]
    monkeypatch.setenv("HOME", str(tmp_path))
    assert [p.name for p in expand(["~/b*.log"])] == ["b.log"]
    assert expand([str(tmp_path / "*.nothing")]) == []


def test_impossible_timestamps_leave_the_time_unknown_instead_of_raising(tmp_path: Path) -> None:
    """Garbage times (year 1 or 9999 with an offset, a boolean) give records without a
    time, and the whole log check still runs to its findings."""
    from stackmedic.logs.diagnose import LogOptions, logs_findings
    from stackmedic.logs.formats import parse_time

    assert parse_time("0001-01-01T00:00:00+05:00") is None
    assert parse_time("9999-12-31T23:59:59-05:00") is None
    assert parse_time(True) is None
    path = tmp_path / "app.jsonl"
    rows = [{"time": "0001-01-01T00:00:00+05:00", "level": "error", "msg": "a"},
            {"time": "9999-12-31T23:59:59-05:00", "level": "error", "msg": "b"},
            {"time": True, "level": "error", "msg": "c"},
            {"time": "2024-05-01T10:00:00Z", "level": "error", "msg": "d"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = list(iter_records([path]))
    assert [r.time is None for r in records] == [True, True, True, False]
    assert logs_findings([path], "api", LogOptions(workers=1))
