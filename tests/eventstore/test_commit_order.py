"""Global positions are committed in order: a live reader never skips an event."""

from __future__ import annotations

import random
import threading
import time

import psycopg

from stackmedic.eventstore import NewEvent, open_store

WRITERS, APPENDS, BATCH = 4, 40, 5


def test_many_writers_and_a_live_projector_see_every_event_exactly_once(dsn: str) -> None:
    """With concurrent writers, a projector paging by position sees each event once."""
    open_store(dsn).close()  # create the schema before the race starts
    done = threading.Event()
    appended: list[str] = []
    seen: list[str] = []
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        try:
            with open_store(dsn) as store:
                for _ in range(APPENDS):
                    events = [NewEvent("e", {"w": n}) for _ in range(BATCH)]
                    store.append(f"s-{rng.randrange(20)}", events)
                    appended.extend(str(e.event_id) for e in events)
        except BaseException as err:  # surfaced by the assertion below
            errors.append(err)

    def projector() -> None:
        position = 0
        with open_store(dsn) as store:
            while True:
                finished = done.is_set()  # read before the page: nothing can be missed
                page = store.read_all(after=position, limit=7)
                for event in page:
                    assert event.position > position
                    position = event.position
                    seen.append(event.event_id)
                if finished and not page:
                    return

    reader = threading.Thread(target=projector)
    reader.start()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()
    assert not errors
    assert len(seen) == len(set(seen)) == WRITERS * APPENDS * BATCH
    assert set(seen) == set(appended)


def test_a_writer_waits_while_an_earlier_append_is_uncommitted(pg_dsn: str) -> None:
    """On PostgreSQL a second append blocks until the open one commits, so the later
    position can never be visible before the earlier one."""
    first, second, reader = open_store(pg_dsn), open_store(pg_dsn), open_store(pg_dsn)
    finished = threading.Event()
    try:
        with first.transaction():
            held = first.append("a-1", [NewEvent("first")])
            thread = threading.Thread(target=lambda: (second.append("b-1", [NewEvent("second")]),
                                                      finished.set()))
            thread.start()
            with psycopg.connect(pg_dsn, autocommit=True) as watch:
                deadline = time.monotonic() + 120  # a hang guard, not a timing assertion
                while not watch.execute(  # wait until the second writer is queued on the lock
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND wait_event = 'advisory'").fetchone()[0]:
                    assert thread.is_alive() and time.monotonic() < deadline
            assert not finished.is_set()
            assert reader.read_all() == []
        thread.join()
        events = reader.read_all()
        assert [(e.type, e.position) for e in events] == [("first", held.last_position),
                                                          ("second", held.last_position + 1)]
    finally:
        for store in (first, second, reader):
            store.close()
