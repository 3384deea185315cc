"""Check registration is validated when a check registers, not when it runs."""

from collections.abc import Iterable

import pytest

from stackmedic.checks import CollectContext, Facts, Probe, RuleContext, all_probes
from stackmedic.config import ComponentBase
from stackmedic.errors import RegistrationError
from stackmedic.findings import Finding
from stackmedic.symptoms import catalogue
from stackmedic.thresholds import Threshold


class _Spec(ComponentBase):
    pass


def _probe(kind: str) -> Probe:
    probe = Probe(kind, _Spec, description="registration test")

    @probe.collector("c")
    def c(component: _Spec, ctx: CollectContext) -> Facts:
        return {}

    return probe


def _rule(facts: Facts, ctx: RuleContext) -> Iterable[Finding]:
    return []


def test_unknown_symptom_fails_with_suggestion() -> None:
    """A misspelt symptom id fails at registration, naming the closest catalogue id."""
    probe = _probe("reg_a")
    with pytest.raises(RegistrationError, match="did you mean 'host.disk.full'"):
        probe.rule("reg_a.x", uses="c", symptoms=["host.disk.ful"])(_rule)


def test_bad_signature_fails() -> None:
    """A rule that does not take (facts, ctx) fails at registration."""
    probe = _probe("reg_b")
    with pytest.raises(RegistrationError, match="exactly 2"):
        probe.rule("reg_b.x", uses="c", symptoms=["host.disk.full"])(lambda facts: [])


def test_threshold_for_undeclared_symptom_fails() -> None:
    """Default thresholds may only be declared for the rule's own symptoms."""
    probe = _probe("reg_c")
    with pytest.raises(RegistrationError, match="undeclared"):
        probe.rule("reg_c.x", uses="c", symptoms=["host.disk.full"],
                   thresholds={"host.disk.inodes": Threshold(1, 2)})(_rule)


def test_check_id_must_start_with_kind_and_collector_must_exist() -> None:
    """Check ids are namespaced by kind, and a rule must read a registered collector."""
    probe = _probe("reg_d")
    with pytest.raises(RegistrationError, match="must start with"):
        probe.rule("other.x", uses="c", symptoms=["host.disk.full"])(_rule)
    with pytest.raises(RegistrationError, match="unknown collector"):
        probe.rule("reg_d.x", uses="nope", symptoms=["host.disk.full"])(_rule)


def test_duplicate_kind_fails() -> None:
    """Two probes cannot claim the same component kind."""
    _probe("reg_e")
    with pytest.raises(RegistrationError, match="registered twice"):
        _probe("reg_e")


def test_every_registered_symptom_is_catalogued() -> None:
    """Every symptom any registered check declares is in symptoms.yaml."""
    known = catalogue()
    for probe in all_probes().values():
        for rule in probe.rules:
            assert set(rule.symptoms) <= set(known), rule.id
