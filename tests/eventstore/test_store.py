"""The store API on both backends: append, expected versions, conflicts, reads."""

from __future__ import annotations

import psycopg
import pytest

import stackmedic.eventstore as es
from stackmedic.eventstore import (
    ANY,
    NO_STREAM,
    AppendBatch,
    ConcurrencyError,
    DuplicateEventError,
    NewEvent,
    open_store,
)


def test_all_is_sorted_and_exported() -> None:
    """The public surface is the sorted __all__ (constants, classes, functions: isort
    style, as ruff keeps it) and every name in it exists."""
    def style(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert es.__all__ == sorted(es.__all__, key=style)
    assert all(hasattr(es, name) for name in es.__all__)


def test_append_and_read_a_stream(dsn: str) -> None:
    """Appended events come back in version order with payload, metadata and UTC time."""
    with open_store(dsn) as store:
        result = store.append("order-1", [NewEvent("placed", {"qty": 2}, {"by": "u1"}),
                                          NewEvent("paid", {"amount": 10})], expected=NO_STREAM)
        assert (result.first_position, result.last_position) == (1, 2)
        assert result.versions == {"order-1": 2}
        events = store.read_stream("order-1")
        assert [(e.version, e.type, e.data) for e in events] == [
            (1, "placed", {"qty": 2}), (2, "paid", {"amount": 10})]
        assert events[0].metadata == {"by": "u1"}
        assert events[0].occurred_at.utcoffset().total_seconds() == 0
        assert store.stream_version("order-1") == 2 and store.stream_version("nope") == 0


def test_expected_versions_any_no_stream_and_exact(dsn: str) -> None:
    """ANY always appends, NO_STREAM only to a new stream, n only at version n."""
    with open_store(dsn) as store:
        store.append("s-1", [NewEvent("a")], expected=ANY)
        store.append("s-1", [NewEvent("b")], expected=1)
        with pytest.raises(ConcurrencyError):
            store.append("s-1", [NewEvent("c")], expected=NO_STREAM)
        with pytest.raises(ConcurrencyError):
            store.append("s-1", [NewEvent("c")], expected=1)
        store.append("s-1", [NewEvent("c")], expected=ANY)
        assert store.stream_version("s-1") == 3


def test_multi_stream_append_is_atomic_and_conflicts_name_streams(dsn: str) -> None:
    """A conflict on one stream appends nothing and the error names streams and versions."""
    with open_store(dsn) as store:
        store.append("order-1", [NewEvent("placed")])
        store.append("stock-9", [NewEvent("added"), NewEvent("added")])
        with pytest.raises(ConcurrencyError) as info:
            store.append_many([AppendBatch("order-1", [NewEvent("reserved")], expected=1),
                               AppendBatch("stock-9", [NewEvent("taken")], expected=1),
                               AppendBatch("audit-1", [NewEvent("x")], expected=NO_STREAM)])
        assert info.value.streams == ["stock-9"]
        assert "stock-9 expected version 1, actual 2" in str(info.value)
        assert store.head() == 3 and store.stream_version("audit-1") == 0
        result = store.append_many([AppendBatch("order-1", [NewEvent("reserved")], expected=1),
                                    AppendBatch("stock-9", [NewEvent("taken")], expected=2)])
        assert result.versions == {"order-1": 2, "stock-9": 3}
        assert store.diagnostics()["conflicts"] == 1


def test_reads_by_category_and_global_position(dsn: str) -> None:
    """read_category filters by stream prefix; read_all pages by position."""
    with open_store(dsn) as store:
        for stream in ("order-1", "stock-1", "order-2", "order-1"):
            store.append(stream, [NewEvent("e")])
        assert [(e.stream, e.position) for e in store.read_category("order")] == [
            ("order-1", 1), ("order-2", 3), ("order-1", 4)]
        assert [e.position for e in store.read_category("order", after=1, limit=1)] == [3]
        assert [e.position for e in store.read_all(after=2)] == [3, 4]
        assert [e.position for e in store.read_all(limit=2)] == [1, 2]


def test_duplicate_event_id_is_rejected(dsn: str) -> None:
    """Appending an event id that is already stored raises DuplicateEventError."""
    with open_store(dsn) as store:
        event = NewEvent("a")
        store.append("s-1", [event])
        with pytest.raises(DuplicateEventError):
            store.append("s-2", [event])
        assert store.head() == 1


def test_checkpoint_commits_with_the_transaction(dsn: str) -> None:
    """A checkpoint saved in a transaction that fails is not stored."""
    with open_store(dsn) as store:
        with pytest.raises(RuntimeError), store.transaction() as tx:
            store.save_checkpoint(tx, "p", 5)
            raise RuntimeError("crash before commit")
        assert store.checkpoint("p") is None
        with store.transaction() as tx:
            store.save_checkpoint(tx, "p", 5)
        checkpoint = store.checkpoint("p")
        assert checkpoint is not None and checkpoint.position == 5


@pytest.mark.parametrize("statement", ["UPDATE es_events SET type = 'x'",
                                       "DELETE FROM es_events", "TRUNCATE es_events"])
def test_postgres_rejects_update_delete_and_truncate(pg_dsn: str, statement: str) -> None:
    """Triggers make the PostgreSQL events table append-only."""
    with open_store(pg_dsn) as store:
        store.append("s-1", [NewEvent("a")])
    with psycopg.connect(pg_dsn) as conn, pytest.raises(psycopg.Error, match="append-only"):
        conn.execute(statement)
    with open_store(pg_dsn) as store:
        assert store.head() == 1


def test_entity_and_store_state_reach_the_diagnostics_endpoint(dsn: str) -> None:
    """Registered with the library's `/diagnostics` document, the store's counters and
    the live count of undispatched domain events come out JSON-able under components."""
    import json
    import warnings
    from dataclasses import dataclass

    from stackmedic import entities
    from stackmedic.observe import Diagnostics

    @dataclass(eq=False)
    class Cart(entities.TimestampedEntity):
        id: str

        def entity_id(self) -> str:
            return self.id

        def validate(self) -> list[entities.Violation]:
            return []

    cart = Cart("cart-1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", entities.PendingEventsWarning)
        for n in range(12):
            cart.record("item_added", n=n)
    with open_store(dsn) as store:
        store.append("order-1", [NewEvent("placed")])
        with store.transaction() as tx:
            store.save_checkpoint(tx, "orders", 1)
        diagnostics = Diagnostics(service="shop")
        diagnostics.register("entities", entities.diagnostics)
        diagnostics.register("events", lambda: es.diagnostics(store))
        components = json.loads(json.dumps(diagnostics.snapshot()))["components"]
    assert components["events"]["head"] == 1 and components["events"]["appended"] == 1
    assert components["events"]["checkpoints"] == {"orders": 1}
    [mine] = [t for t in components["entities"]["top"] if t["entity"].endswith("Cart(cart-1)")]
    assert (mine["pending"], mine["over_bound"]) == (12, True)
    assert cart.pull_events() and "Cart(cart-1)" not in str(entities.diagnostics())
