"""The cache.auth.failed remedy applied for real: the doctor gets its own user and the
application keeps working."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from stackmedic.findings import Severity
from stackmedic.testing import run_components
from tests.fixtures.redis import RedisServer
from tests.redis.conftest import FAST, admin, diagnose, only


def test_the_acl_fix_leaves_the_application_alone_and_gives_the_doctor_no_denial(
        redis_factory: Callable[..., RedisServer]) -> None:
    """Running every ACL command of the remedy for a NOAUTH `default` user (as the admin,
    who is `default` here) keeps the application's GET/SET working, and the doctor run
    as the user it creates authenticates with no command denied."""
    server = redis_factory("--requirepass", "app-pass-7")
    app = admin(server, password="app-pass-7")
    app.set("order:1", "paid")
    refused = only(diagnose(server.url), "cache.auth.failed")
    assert refused.severity is Severity.CRITICAL and refused.remedy is not None
    commands = [line.strip().replace("NEW_PASSWORD", "doctor-pass-8")
                for step in refused.remedy.steps for line in step.splitlines()
                if line.strip().startswith("ACL ")]
    assert any(c.startswith("ACL SETUSER") for c in commands)
    for command in commands:
        app.execute_command(*shlex.split(command))
    app.set("order:2", "placed")
    assert app.get("order:1") == b"paid"
    run = run_components({"cache": {"kind": "redis", "url": server.url,
                                    "username": "stackmedic", "password": "doctor-pass-8",
                                    **FAST}})
    assert only(run.findings, "cache.auth.failed").severity is Severity.OK
    assert run.facts["cache"]["server"]["denied"] == []
    assert [f.summary for f in run.findings if f.is_problem] == []
