"""The `postgres` component kind: deep, read-only diagnosis of one PostgreSQL server.

One collector (`snapshot`) opens ONE connection per run (`application_name=stackmedic`,
`default_transaction_read_only=on`, `statement_timeout`, `lock_timeout`), reads one
snapshot of `pg_stat_activity` and the statistics views every rule needs, and returns
plain facts. The rules in `rules_sessions` and `rules_storage` turn those facts into
`db.*` findings, so every rule can be tested from recorded facts.

    db: {kind: postgres, dsn: "postgresql://monitor:${PGPASSWORD}@10.0.0.5/app",
         unique: [{table: customers, columns: [portal_id]}]}

A missing `dsn` falls back to libpq's PG* environment variables (PGHOST, PGUSER…).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stackmedic.checks import Probe
from stackmedic.config import ComponentBase

__all__ = ["PostgresComponent", "UniqueCheck", "probe"]


class UniqueCheck(BaseModel):
    """Columns whose values must be unique even if no constraint says so."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    table: str = Field(..., description="table name, optionally schema-qualified")
    columns: list[str] = Field(..., min_length=1, description="columns that together are unique")


class PostgresComponent(ComponentBase):
    """A stack-file entry: `{kind: postgres, dsn: "postgresql://user@host/db"}`."""

    dsn: str | None = Field(None, description="libpq URI or key=value string; "
                            "omitted: PG* environment variables")
    unique: list[UniqueCheck] = Field(default_factory=list,
                                      description="user-declared uniqueness checks")
    statement_timeout_ms: int = Field(2000, gt=0, description="per-query server timeout")
    lock_timeout_ms: int = Field(1000, gt=0, description="longest wait for any lock")
    deadlock_sample_ms: int = Field(250, ge=0, description="interval between the two "
                                    "samples of the deadlock counter within one run")
    min_table_rows: int = Field(10_000, ge=0, description="tables smaller than this are "
                                "ignored by the index and vacuum checks")
    idle_leak_age_s: float = Field(300.0, ge=0, description="an idle session older than "
                                   "this counts towards a connection leak")


def _discover(host: str, port: int) -> dict[str, Any]:
    """Autodiscovery: user and password still come from PGUSER/PGPASSWORD if set."""
    return {"dsn": f"host={host} port={port} dbname=postgres"}


probe = Probe("postgres", PostgresComponent, default_ports=(5432,), discover=_discover,
              description="a PostgreSQL server (primary or standby)")

# The modules below register the collector and rules on `probe`; they need it defined.
from stackmedic.probes.postgres import (  # noqa: E402
    collect,  # noqa: F401
    rules_availability,  # noqa: F401
    rules_sessions,  # noqa: F401
    rules_storage,  # noqa: F401
    rules_transactions,  # noqa: F401
)
