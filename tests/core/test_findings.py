"""The Finding model: severity order, exit codes, fingerprints, JSON shape."""

from stackmedic.findings import Finding, Severity, overall_status, sort_key


def make(**kw: object) -> Finding:
    base = {"check": "host.disk", "symptom": "host.disk.full", "component": "host",
            "severity": Severity.WARNING, "summary": "disk full"}
    base.update(kw)
    return Finding(**base)  # type: ignore[arg-type]


def test_severity_order_and_exit_codes() -> None:
    """ok < info < warning < critical; ok/info exit 0, warning 1, critical 2, unknown 3."""
    assert [s.exit_code for s in Severity] == [0, 0, 1, 2, 3]
    assert Severity.OK.rank < Severity.INFO.rank < Severity.WARNING.rank < Severity.CRITICAL.rank


def test_unknown_is_never_ok() -> None:
    """A run with only an unknown finding is unknown (exit 3), and it counts as a problem."""
    unknown = make(severity=Severity.UNKNOWN)
    assert overall_status([make(severity=Severity.OK), unknown]) is Severity.UNKNOWN
    assert unknown.is_problem


def test_worst_finding_wins() -> None:
    """Critical beats unknown and warning; an empty run is ok."""
    assert overall_status([]) is Severity.OK
    assert overall_status([make(severity=Severity.UNKNOWN),
                           make(severity=Severity.CRITICAL)]) is Severity.CRITICAL
    assert overall_status([make(severity=Severity.WARNING),
                           make(severity=Severity.INFO)]) is Severity.WARNING


def test_fingerprint_stable_when_numbers_change() -> None:
    """The same problem (same path) keeps its fingerprint while its numbers change."""
    a = make(observed=0.91, evidence={"path": "/", "used": 10}, identity=("path",))
    b = make(observed=0.97, severity=Severity.CRITICAL,
             evidence={"path": "/", "used": 99}, identity=("path",))
    assert a.fingerprint == b.fingerprint


def test_fingerprint_differs_for_another_problem() -> None:
    """Another path, component or check is another problem with another fingerprint."""
    a = make(evidence={"path": "/"}, identity=("path",))
    assert a.fingerprint != make(evidence={"path": "/var"}, identity=("path",)).fingerprint
    assert a.fingerprint != make(evidence={"path": "/"}, identity=("path",),
                                 component="db").fingerprint
    assert a.fingerprint != make(evidence={"path": "/"}, identity=("path",),
                                 check="host.inodes").fingerprint


def test_to_dict_has_the_documented_keys() -> None:
    """The JSON shape carries exactly the keys docs/json-output.md documents."""
    assert set(make().to_dict()) == {
        "check", "symptom", "component", "severity", "summary", "observed", "threshold",
        "unit", "evidence", "cause", "remedy", "fingerprint", "root_cause", "explains",
        "explained_by"}


def test_root_causes_sort_first() -> None:
    """Root causes come before worse findings that are not root causes."""
    root = make(severity=Severity.WARNING, root_cause=True, component="db")
    worse = make(severity=Severity.CRITICAL, component="api")
    assert sorted([worse, root], key=sort_key) == [root, worse]
