"""Run the latency tests on both paths: the C speedups and the pure-Python fallback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stackmedic.observe import _accel, _latency, _sketch


@pytest.fixture(params=["c", "python"])
def implementation(request: pytest.FixtureRequest,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """"c" (skipped where the extension is not built) or "python" (speedups off);
    trackers and sketches must be made inside the test to take the chosen path."""
    if request.param == "c" and _accel.speedups is None:
        pytest.skip("the C speedups are not built here")
    if request.param == "python":
        monkeypatch.setattr(_latency, "speedups", None)
        monkeypatch.setattr(_sketch, "speedups", None)
    yield request.param
