"""The built-in PostgreSQL health check imports its driver when it is built, so the
first /health request does not import it on the event loop; psycopg stays optional."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("psycopg")

# A fresh interpreter: this one has imported psycopg long ago.
_PROBE = """
import sys
from stackmedic.observe import postgres_check
before = "psycopg" in sys.modules
postgres_check("postgresql://x@127.0.0.1:1/x")
print(before, "psycopg" in sys.modules)
"""


def test_postgres_check_imports_psycopg_when_built_not_when_run() -> None:
    """Importing stackmedic.observe leaves psycopg unloaded; building the check loads it,
    before any request runs the check on the event loop."""
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.split() == ["False", "True"]
