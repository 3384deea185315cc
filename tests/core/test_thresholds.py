"""Threshold resolution: defaults < file < component < environment; directions."""

import pytest

from stackmedic.errors import ConfigError
from stackmedic.findings import Severity
from stackmedic.thresholds import Threshold, Thresholds, env_name

DEFAULTS = {"host.disk.full": Threshold(0.85, 0.95, "ratio"),
            "net.tls.expiring": Threshold(14, 7, "days", "below")}


def test_precedence() -> None:
    """The environment beats the component, which beats the file, which beats defaults."""
    t = Thresholds(DEFAULTS, {"host.disk.full": {"warning": 0.7}},
                   {"host": {"host.disk.full": {"critical": 0.9}}},
                   environ={"STACKMEDIC_HOST_DISK_FULL_WARNING": "0.5"})
    assert t.get("host.disk.full") == Threshold(0.5, 0.95, "ratio")
    assert t.get("host.disk.full", "host") == Threshold(0.5, 0.9, "ratio")
    assert Thresholds(DEFAULTS, environ={}).get("host.disk.full") == DEFAULTS["host.disk.full"]


def test_env_name() -> None:
    """Symptom ids map to upper-case environment names with underscores."""
    assert env_name("db.connections.exhausted", "warning") == \
        "STACKMEDIC_DB_CONNECTIONS_EXHAUSTED_WARNING"


def test_bad_env_value_is_a_config_error() -> None:
    """A non-numeric environment override is a one-line config error naming the variable."""
    t = Thresholds(DEFAULTS, environ={"STACKMEDIC_HOST_DISK_FULL_CRITICAL": "lots"})
    with pytest.raises(ConfigError, match="STACKMEDIC_HOST_DISK_FULL_CRITICAL"):
        t.get("host.disk.full")


def test_directions() -> None:
    """'above' flags large values, 'below' flags small ones (days to expiry)."""
    disk, tls = DEFAULTS["host.disk.full"], DEFAULTS["net.tls.expiring"]
    assert [disk.classify(v) for v in (0.5, 0.9, 0.99)] == \
        [Severity.OK, Severity.WARNING, Severity.CRITICAL]
    assert [tls.classify(v) for v in (30, 10, 3)] == \
        [Severity.OK, Severity.WARNING, Severity.CRITICAL]
