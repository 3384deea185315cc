"""Stack files: interpolation, validation, and one-line errors with file and line."""

from pathlib import Path

import pytest

from stackmedic import redact
from stackmedic.config import json_schema, load_stack, parse_stack
from stackmedic.errors import ConfigError

GOOD = """\
stack: shop
components:
  db:
    kind: fake
    symptom: db.down
    evidence: {password_hint: "${DB_PASSWORD}", port: "${PORT:-5432}"}
  api:
    kind: fake
    depends_on: [db]
thresholds:
  host.disk.full: {warning: 0.7}
"""


def error(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_stack(text, "stackmedic.yaml", environ or {})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_good_file_with_interpolation() -> None:
    """${VAR} and ${VAR:-default} expand; thresholds and dependencies are kept."""
    stack = parse_stack(GOOD, "s.yaml", {"DB_PASSWORD": "hunter22"})
    db = stack.components["db"]
    assert db.evidence == {"password_hint": "hunter22", "port": "5432"}  # type: ignore[attr-defined]
    assert stack.components["api"].depends_on == ["db"]
    assert stack.thresholds == {"host.disk.full": {"warning": 0.7}}


def test_interpolated_secret_is_registered_for_redaction() -> None:
    """A value from a secret-named variable is masked wherever it appears later."""
    parse_stack(GOOD, "s.yaml", {"DB_PASSWORD": "hunter22"})
    assert redact.redact_text("login failed for hunter22") == "login failed for ***"


def test_dollar_dollar_is_a_literal_dollar() -> None:
    """`$$` escapes a dollar sign."""
    stack = parse_stack("components:\n  a: {kind: fake, description: 'cost $$5'}\n", "s", {})
    assert stack.components["a"].description == "cost $5"


def test_undefined_variable() -> None:
    """An undefined ${VAR} names the variable, file and line."""
    message = error(GOOD)
    assert message.startswith("stackmedic.yaml:6: components.db.evidence.password_hint:")
    assert "${DB_PASSWORD} is not set" in message


def test_unknown_kind_suggests_the_closest() -> None:
    """A misspelt kind gets a did-you-mean at the line of the kind."""
    message = error("components:\n  db:\n    kind: faek\n")
    assert message == ("stackmedic.yaml:3: components.db.kind: unknown kind 'faek' "
                       "(did you mean 'fake'?)")


def test_unknown_key() -> None:
    """An unknown key is an error at its own line, with a suggestion."""
    message = error("components:\n  db:\n    kind: fake\n    depnds_on: [x]\n")
    assert message.startswith("stackmedic.yaml:4: components.db.depnds_on: unknown key")
    assert "did you mean 'depends_on'" in message


def test_wrong_type() -> None:
    """A value of the wrong type names the key, line and the value given."""
    message = error("components:\n  db:\n    kind: fake\n    value: lots\n")
    assert message.startswith("stackmedic.yaml:4: components.db.value:")
    assert "'lots'" in message


def test_bad_yaml() -> None:
    """Broken YAML is reported with its line."""
    message = error("components:\n  db: {kind: fake\n  api: [\n")
    assert message.startswith("stackmedic.yaml:")
    assert "invalid YAML" in message


def test_unknown_dependency_and_threshold_symptom() -> None:
    """depends_on must name a component; thresholds must name a catalogued symptom."""
    assert "unknown component 'dbb'" in error(
        "components:\n  db: {kind: fake}\n  api: {kind: fake, depends_on: [dbb]}\n")
    message = error("components: {}\nthresholds:\n  host.disk.ful: {warning: 1}\n")
    assert message.startswith("stackmedic.yaml:3: thresholds.host.disk.ful:")
    assert "did you mean 'host.disk.full'" in message


def test_swapped_levels_and_dependency_cycles_are_refused() -> None:
    """A critical level milder than the warning (either direction, also against a default
    it leaves alone) and a depends_on cycle are one-line errors at their line."""
    message = error("components: {}\nthresholds:\n  host.disk.full: "
                    "{warning: 0.95, critical: 0.9}\n")
    assert message.startswith("stackmedic.yaml:3: thresholds.host.disk.full:")
    assert "warning 0.95 and critical 0.9 are swapped" in message
    assert "swapped" in error("components: {}\nthresholds:\n"
                              "  host.memory.pressure: {critical: 0.2}\n")  # default warn 0.15
    assert "swapped" in error("components:\n  db:\n    kind: fake\n    thresholds:\n"
                              "      host.disk.full: {warning: 0.99}\n")  # default crit 0.95
    parse_stack("components: {}\nthresholds:\n  host.memory.pressure: {warning: 0.3}\n")
    message = error("components:\n  a: {kind: fake, depends_on: [b]}\n"
                    "  b: {kind: fake, depends_on: [c]}\n  c: {kind: fake, depends_on: [a]}\n")
    assert "depends_on goes round in a circle: a -> b -> c -> a" in message
    assert message.startswith("stackmedic.yaml:2:")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    """A missing or empty file is a one-line error naming it."""
    with pytest.raises(ConfigError, match="no such file"):
        load_stack(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_stack(empty)


def test_schema_has_a_branch_per_kind() -> None:
    """The JSON Schema offers every registered kind as a component variant."""
    schema = json_schema()
    text = str(schema)
    assert "'fake'" in text
    assert schema["title"] == "stackmedic stack file"


def test_every_independent_error_in_one_go() -> None:
    """A file with several mistakes reports each on its own line in file order: unknown
    keys (with did-you-mean inside thresholds too), kinds, dependencies, symptoms; an
    unset ${VAR} is one error, not also its empty stand-in's wrong type."""
    with pytest.raises(ConfigError) as info:
        parse_stack("components:\n"
                    "  db:\n    kind: fake\n    depnds_on: [x]\n"
                    "    thresholds:\n      host.disk.full: {warn: 0.9}\n"
                    "  api: {kind: faek}\n"
                    "  web: {kind: fake, depends_on: [dbb, api], value: lots}\n"
                    "  job: {kind: fake, value: '${LEVEL}'}\n"
                    "thresholds:\n  host.disk.full: {warn: 0.7}\n"
                    "  host.disk.ful: {warning: 0.7}\n", "s.yaml", {})
    assert [str(e) for e in info.value.errors] == [
        "s.yaml:4: components.db.depnds_on: unknown key (did you mean 'depends_on'?)",
        "s.yaml:6: components.db.thresholds.host.disk.full.warn: unknown key "
        "(did you mean 'warning'?)",
        "s.yaml:7: components.api.kind: unknown kind 'faek' (did you mean 'fake'?)",
        "s.yaml:8: components.web.value: input should be a valid number, "
        "unable to parse string as a number, got 'lots'",
        "s.yaml:8: components.web.depends_on.0: unknown component 'dbb' (did you mean 'db'?)",
        "s.yaml:9: components.job.value: environment variable ${LEVEL} is not set "
        "(set it, or write ${LEVEL:-default})",
        "s.yaml:11: thresholds.host.disk.full.warn: unknown key (did you mean 'warning'?)",
        "s.yaml:12: thresholds.host.disk.ful: unknown symptom id 'host.disk.ful' "
        "(did you mean 'host.disk.full'?)",
    ]
    assert str(info.value).count("\n") == 7

