"""The project's symptom catalogue is a superset of the shared taxonomy."""

from pathlib import Path

import pytest
import yaml

from stackmedic.symptoms import catalogue

SHARED = Path(__file__).resolve().parents[3] / "shared" / "taxonomy.yaml"


def test_catalogue_contains_every_shared_id() -> None:
    """Every id of ../shared/taxonomy.yaml is in src/stackmedic/symptoms.yaml."""
    if not SHARED.is_file():
        pytest.skip(f"{SHARED} is absent (a user's clone): nothing to compare against")
    shared = yaml.safe_load(SHARED.read_text())
    ids = {sid for group in shared.values() for sid in group}
    missing = ids - set(catalogue())
    assert not missing, f"missing from symptoms.yaml: {sorted(missing)}"


def test_ids_are_unique_and_described() -> None:
    """No id appears twice across groups and each says what detecting it rests on."""
    text = (Path(__file__).resolve().parents[2] / "src/stackmedic/symptoms.yaml").read_text()
    data = yaml.safe_load(text)
    ids = [sid for group in data.values() for sid in group]
    assert len(ids) == len(set(ids))
    assert all(catalogue()[sid] for sid in ids)


def test_the_correlation_table_names_known_ids_only() -> None:
    """Every effect and cause in correlations.yaml is a catalogue id (a typo would
    silently never correlate), and rows use only the documented keys."""
    text = (Path(__file__).resolve().parents[2] / "src/stackmedic/correlations.yaml")
    known = set(catalogue())
    for row in yaml.safe_load(text.read_text()):
        assert set(row) <= {"effects", "causes", "within", "match", "requires", "when",
                            "unless"}, row
        assert row.get("within", "dependencies") in ("dependencies", "component"), row
        unknown = set(row["effects"]) - known | set(row["causes"]) - known
        assert not unknown, f"unknown ids in correlations.yaml: {sorted(unknown)}"
