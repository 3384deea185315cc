"""The Gatus-style condition language, evaluated on recorded facts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stackmedic.errors import ConfigError
from stackmedic.probes._conditions import ConditionError, evaluate, parse
from stackmedic.testing import run_components

FACTS: dict[str, Any] = {
    "connected": True, "status": 200, "response_time_ms": 120.5,
    "certificate_expiration_ms": 5 * 86_400_000,
    "body": json.dumps({"data": {"status": "ok", "version": "2.4.1"},
                        "items": [{"id": 7}, {"id": 8}], "errors": None, "name": "api-eu"}),
}


def check(text: str, facts: dict[str, Any] = FACTS) -> dict[str, Any]:
    return evaluate(parse(text), facts)


@pytest.mark.parametrize("text", [
    "[STATUS] == 200", "[STATUS] < 300", "[RESPONSE_TIME] < 500", "[RESPONSE_TIME] >= 120.5",
    '[BODY].data.status == "ok"', "[BODY].data.status == ok", "[BODY].items[1].id == 8",
    "len([BODY].items) > 0", "len([BODY].items) == 2", "has([BODY].data) == true",
    "has([BODY].nothing) == false", "[BODY].name == pat(api-*)", "[STATUS] == any(200, 204)",
    "[CERTIFICATE_EXPIRATION] > 72h", "[CERTIFICATE_EXPIRATION] < 6d", "[CONNECTED] == true",
    "[BODY].errors == null", '[BODY].data.version != "2.4.0"',
])
def test_conditions_that_hold(text: str) -> None:
    """Each supported form evaluates to true on matching facts."""
    assert check(text)["ok"] is True


@pytest.mark.parametrize(("text", "actual"), [
    ("[STATUS] == 201", 200),
    ('[BODY].data.status == "down"', "ok"),
    ("len([BODY].items) > 5", 2),
    ("[CERTIFICATE_EXPIRATION] > 240h", 5 * 86_400_000),
    ("[BODY].missing.path == 1", "<missing>"),
    ("[BODY].name == pat(web-*)", "api-eu"),
    ("[RESPONSE_TIME] < 100", 120.5),
])
def test_conditions_that_fail_report_the_actual_value(text: str, actual: Any) -> None:
    """A failing condition is false and carries the value actually seen."""
    result = check(text)
    assert result["ok"] is False and result["actual"] == actual


def test_body_that_is_not_json_and_missing_certificate() -> None:
    """A JSON path on a non-JSON body, or a certificate on plain HTTP, never holds and
    never raises."""
    facts = {**FACTS, "body": "<html>oops</html>", "certificate_expiration_ms": None}
    assert check("[BODY].data.status == ok", facts)["ok"] is False
    assert check("[CERTIFICATE_EXPIRATION] > 1h", facts)["actual"] == "<missing>"
    assert check("[BODY] == pat(*oops*)", facts)["ok"] is True


@pytest.mark.parametrize("text", [
    "[STATUS] 200", "[STATSU] == 200", "200 == [STATUS]", "[STATUS].x == 1", "[BODY]..x == 1",
])
def test_malformed_conditions_are_rejected_when_parsed(text: str) -> None:
    """Typos fail at parse time with a message naming the condition."""
    with pytest.raises(ConditionError, match="condition"):
        parse(text)


def test_stack_file_with_a_bad_condition_fails_validation() -> None:
    """A bad condition in a stack file is a config error naming the key."""
    with pytest.raises(ConfigError, match="conditions"):
        run_components({"api": {"kind": "http", "url": "http://127.0.0.1:1/",
                                "conditions": ["[STATSU] == 200"]}})


@pytest.mark.parametrize("text", ["[STATUS] < any(200, 300)", "[BODY].name > pat(api-*)"])
def test_pattern_and_any_with_an_ordering_operator_are_rejected_when_parsed(text: str) -> None:
    """pat()/any() with < <= > >= fail when the stack file is validated, not in a rule."""
    with pytest.raises(ConditionError, match="only work with == or !="):
        parse(text)


def test_any_options_may_hold_commas_inside_quotes() -> None:
    """any("a,b", "c") has two options, the first containing a comma."""
    facts = {**FACTS, "body": json.dumps({"s": "a,b"})}
    assert check('[BODY].s == any("a,b", "c")', facts)["ok"] is True
    assert check('[BODY].s == any("a", "b")', facts)["ok"] is False
