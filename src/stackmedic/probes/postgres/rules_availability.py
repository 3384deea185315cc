"""Rules on reaching the server: down, refused logins, a database that does not exist."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from difflib import get_close_matches

from stackmedic.checks import Facts, RuleContext
from stackmedic.findings import Finding, Remedy, Severity
from stackmedic.probes.postgres import probe

_DOWN_CAUSES = {
    "refused": "nothing listens on that address: the server is stopped, crashed, or "
               "listens elsewhere (listen_addresses, port)",
    "timeout": "the server or the network path does not answer (host down, firewall "
               "dropping packets, or the server is overloaded)",
    "starting": "the server is starting up or recovering and not yet accepting connections",
    "shutting_down": "the server is shutting down",
    "not_accepting": "the server runs but admits no sessions: a standby with hot_standby = "
                     "off (or one not yet consistent) only replays WAL",
    "other": "the connection failed for the reason in the message",
}


def _where(facts: Facts) -> str:
    t = facts["target"]
    return f"{t['user']}@{t['host']}:{t['port']}/{t['database']}"


@probe.rule("postgres.availability", uses="snapshot", symptoms=["db.down", "db.auth.failed"])
def availability(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    """The server accepts a connection for the configured role."""
    target = facts["target"]
    if facts["connected"]:
        version = (facts.get("server") or {}).get("version")
        for symptom, what in (("db.down", "accepts connections"),
                              ("db.auth.failed", "accepts the configured role")):
            yield ctx.finding(symptom, Severity.OK, f"PostgreSQL {version} at {_where(facts)} "
                              f"{what}", observed=facts["connect_ms"], unit="ms",
                              evidence={**target, "version": version}, identity=("host", "port"))
        return
    error = facts["error"]
    evidence = {**target, **error}
    if error["kind"] == "config":
        yield ctx.finding(
            "db.down", Severity.UNKNOWN, f"cannot check PostgreSQL: the dsn is invalid "
            f"({error['message']})", evidence=evidence, identity=("host", "port"),
            cause="the component's dsn (or a PG* variable) is not a valid libpq connection "
                  "string", remedy=Remedy("db.down", (
                      f"Correct the dsn of component {ctx.component} (a URI such as "
                      "`postgresql://user@host:5432/dbname` or `host=… port=… dbname=…`) "
                      "and check it with `psql \"<dsn>\" -c 'SELECT 1'`.",)))
    elif error["kind"] == "no_database":
        yield _no_database(facts, ctx)
    elif error["kind"] == "auth":
        yield ctx.finding(
            "db.auth.failed", Severity.CRITICAL,
            f"PostgreSQL at {target['host']}:{target['port']} rejected role "
            f"{target['user']!r} ({error.get('auth_method', 'unknown')} authentication)",
            evidence=evidence, identity=("host", "port", "user"),
            cause="the password is wrong or expired, the role or database does not exist, "
                  "or no pg_hba.conf line admits this role from this host")
    elif error["kind"] != "too_many":  # the slots rule reports a full server
        yield ctx.finding(
            "db.down", Severity.CRITICAL,
            f"PostgreSQL at {target['host']}:{target['port']} is not accepting connections "
            f"({error['kind'].replace('_', ' ')})", evidence=evidence, identity=("host", "port"),
            cause=_DOWN_CAUSES.get(error["kind"], _DOWN_CAUSES["other"]))


def _no_database(facts: Facts, ctx: RuleContext) -> Finding:
    """db.down for a dsn naming a database the server does not have: the server is up and
    admitted the role, so nothing about passwords or pg_hba.conf is wrong."""
    target, error = facts["target"], facts["error"]
    name, existing = target["database"], error.get("databases")
    close = get_close_matches(name, existing or [], n=3, cutoff=0.6)
    listed = ("the databases that exist: " + ", ".join(existing) if existing
              else "no other database could be listed")
    guess = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    where = shlex.join(["-h", target["host"], "-p", str(target["port"]), "-U", target["user"]])
    return ctx.finding(
        "db.down", Severity.CRITICAL,
        f"PostgreSQL at {target['host']}:{target['port']} is up, but database {name!r} "
        f"does not exist ({guess}{listed})",
        evidence={**target, **error, "databases": existing, "did_you_mean": ", ".join(close)},
        identity=("host", "port", "database"),
        cause=f"the dsn of component {ctx.component} names database {name!r}, which this "
              "server does not have: a typo, a database not created yet, or one dropped",
        remedy=Remedy("db.down", (
            f"Correct the database name in the dsn of component {ctx.component} "
            f"({guess}{listed}); list them with `psql {where} -l`.",
            f"If {name!r} should exist, create it (then run the migrations or restore "
            f"into it): `createdb {where} {shlex.quote(name)}`")))
