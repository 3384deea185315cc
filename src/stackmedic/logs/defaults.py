"""Default thresholds of the log checks, importable without the log machinery.

The doctor merges these into every run's thresholds (`checks.default_thresholds`),
so stack files and `STACKMEDIC_LOGS_*` variables can override them.
"""

from __future__ import annotations

from stackmedic.symptoms import catalogue
from stackmedic.thresholds import Threshold

__all__ = ["DEFAULT_THRESHOLDS", "ERROR_SYMPTOMS"]

ERROR_SYMPTOMS = tuple(sorted(s for s in catalogue() if s.startswith("logs.error.")))
DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    **{s: Threshold(1, None, unit="lines") for s in ERROR_SYMPTOMS},
    "logs.error_rate.spike": Threshold(3.0, 10.0, unit="x baseline"),
    "logs.pattern.n_plus_one": Threshold(10, 50, unit="queries per request"),
    "logs.template.new": Threshold(1, None, unit="lines"),
}
