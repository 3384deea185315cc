"""No runbook suggests raising maxmemory to a value that is not higher than the current
one: a limit already at 75% of the machine gets "no room" steps (scale up, shard, reduce
the data) instead of a `CONFIG SET maxmemory` that changes nothing."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from tests.fixtures.redis import RedisServer
from tests.redis.conftest import admin, diagnose, only

# The limit sits at 75% of the machine, gigabytes here: the test cannot fill it, so
# the stack file's thresholds (as a user may set them) call its real use a problem.
ANY_USE = {"warning": 0.0, "critical": 1e9}


def test_maxmemory_already_at_75_percent_of_the_machine_is_not_raised(
        redis_factory: Callable[..., RedisServer]) -> None:
    """A noeviction server whose maxmemory equals the suggestion (75% of
    total_system_memory, rounded up to MiB as the rule does): noeviction_full,
    near_limit and evictions offer no `CONFIG SET maxmemory` and say the machine has
    no room left, naming the current limit and the machine's memory."""
    server = redis_factory("--maxmemory-policy", "noeviction")
    client = admin(server)
    system = int(client.info("memory")["total_system_memory"])
    limit_mb = math.ceil(0.75 * system / 2**20)
    client.config_set("maxmemory", f"{limit_mb}mb")
    client.mset({f"k{i}": "x" * 1024 for i in range(2000)})
    findings = diagnose(server.url, thresholds=dict.fromkeys(
        ("cache.policy.noeviction_full", "cache.memory.near_limit", "cache.evictions"),
        ANY_USE))
    for symptom in ("cache.policy.noeviction_full", "cache.memory.near_limit",
                    "cache.evictions"):
        finding = only(findings, symptom)
        assert finding.is_problem and finding.remedy is not None, finding.summary
        assert finding.evidence["suggested_maxmemory"] is None
        steps = "\n".join(finding.remedy.steps)
        assert "CONFIG SET maxmemory " not in steps, steps
        assert f"maxmemory ({finding.evidence['maxmemory_human']}) already takes 75%" in steps
        assert "shard" in steps and "more memory" in steps
        assert not re.search(r"<[a-z_]+>", steps), steps
