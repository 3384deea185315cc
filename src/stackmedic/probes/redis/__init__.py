"""The `redis` component kind: read-only, bounded diagnosis of one Redis server.

One collector (`_collect`) opens one connection through the allowlist wrapper
(`_client`), samples INFO twice a short interval apart, times PINGs, reads the
slow log, latency monitor and replication state and samples big keys within a key
and time budget. Rules (`_rules_*`) turn those facts into every `cache.*` symptom.

    cache: {kind: redis, url: "redis://127.0.0.1:6379/0", username: app,
            password: "${REDIS_PASSWORD}"}
"""

from __future__ import annotations

from pydantic import Field, field_validator

from stackmedic.checks import Probe
from stackmedic.config import ComponentBase

__all__ = ["RedisComponent", "probe"]


class RedisComponent(ComponentBase):
    """A stack-file entry: `{kind: redis, url: "redis://host:6379/0"}`."""

    url: str = Field("redis://127.0.0.1:6379/0",
                     description="redis://[user:pass@]host:port/db, rediss://… or "
                                 "unix:///path/redis.sock")
    username: str | None = Field(None, description="ACL user (default: the URL's or 'default')")
    password: str | None = Field(None, description="password; use ${ENV}, never a literal")
    tls_ca_file: str | None = Field(None, description="CA bundle for rediss:// servers")
    sample_interval_s: float = Field(0.5, ge=0.0, le=10.0,
                                     description="seconds between the two INFO samples that "
                                                 "give rates (evictions, hit rate, rejections)")
    rtt_samples: int = Field(10, ge=1, le=200, description="PINGs timed for p50/p95")
    slowlog_window_s: float = Field(600.0, gt=0,
                                    description="slow-log entries younger than this count")
    max_keys: int = Field(10_000, ge=0,
                          description="keys sampled for big keys (0 turns sampling off)")
    bigkey_budget_s: float = Field(1.0, ge=0.0,
                                   description="seconds the big-key sampling may take")
    scan_count: int = Field(500, ge=1, le=10_000, description="COUNT hint of each SCAN")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        """Refuse a URL the driver would reject later (or, for a bad db, quietly ignore)."""
        from urllib.parse import urlsplit

        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
        except ValueError as err:
            raise ValueError(f"not a valid URL: {err}") from None
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError("unix:// needs the socket path: unix:///run/redis/redis.sock")
        elif parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise ValueError(f"the path must be a database number (/0), not {parts.path!r}")
        return url


def _discover(host: str, port: int) -> dict[str, str]:
    return {"url": f"redis://{host}:{port}/0"}


probe = Probe("redis", RedisComponent, description="a Redis server (read-only checks)",
              default_ports=(6379,), discover=_discover)

# Registration happens on import; these modules need `probe`, so they come last.
from stackmedic.probes.redis import _collect, _rules_health, _rules_memory  # noqa: E402,F401
