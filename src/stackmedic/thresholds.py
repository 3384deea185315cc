"""Thresholds: the numbers that turn an observation into a severity.

Rules declare defaults per symptom when they register; a stack file's `thresholds:`
overrides them, a component's own `thresholds:` overrides those, and environment
variables `STACKMEDIC_<SYMPTOM_ID_UPPER>_WARNING` / `_CRITICAL` win over all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from stackmedic.findings import Severity

__all__ = ["Threshold", "Thresholds", "env_name"]

Direction = Literal["above", "below"]


@dataclass(frozen=True, slots=True)
class Threshold:
    """Warning and critical levels for one symptom.

    `direction="above"` means larger observed values are worse (disk usage);
    `"below"` means smaller ones are (free memory, days to certificate expiry).
    Ratios are fractions in 0..1 and are shown as percentages.
    """

    warning: float | None
    critical: float | None
    unit: str = ""
    direction: Direction = "above"

    def classify(self, value: float) -> Severity:
        """The severity of an observed value against these levels (NaN: unknown)."""
        if math.isnan(value):
            return Severity.UNKNOWN
        if self._crosses(value, self.critical):
            return Severity.CRITICAL
        if self._crosses(value, self.warning):
            return Severity.WARNING
        return Severity.OK

    def _crosses(self, value: float, level: float | None) -> bool:
        if level is None:
            return False
        return value >= level if self.direction == "above" else value <= level

    def breached(self) -> float | None:
        """The level to quote beside a verdict: warning if set, else critical."""
        return self.warning if self.warning is not None else self.critical

    def level_for(self, severity: Severity) -> float | None:
        """The level that produced `severity` (for `Finding.threshold`)."""
        if severity is Severity.CRITICAL:
            return self.critical
        if severity is Severity.WARNING:
            return self.warning
        return self.breached()


def env_name(symptom: str, level: str) -> str:
    """`db.connections.exhausted`, `warning` → `STACKMEDIC_DB_CONNECTIONS_EXHAUSTED_WARNING`."""
    return "STACKMEDIC_" + symptom.upper().replace(".", "_") + "_" + level.upper()


class Thresholds:
    """Resolves the threshold in force for a symptom, optionally for one component."""

    def __init__(
        self,
        defaults: Mapping[str, Threshold],
        overrides: Mapping[str, Mapping[str, float | None]] | None = None,
        component_overrides: Mapping[str, Mapping[str, Mapping[str, float | None]]]
        | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._defaults = dict(defaults)
        self._overrides = dict(overrides or {})
        self._component_overrides = dict(component_overrides or {})
        self._environ = os.environ if environ is None else environ

    def get(self, symptom: str, component: str | None = None) -> Threshold:
        """The threshold for `symptom`; KeyError if no rule declared a default."""
        threshold = self._defaults[symptom]
        layers = [self._overrides.get(symptom)]
        if component is not None:
            layers.append(self._component_overrides.get(component, {}).get(symptom))
        for layer in layers:
            if layer:
                threshold = replace(threshold,
                                    warning=layer.get("warning", threshold.warning),
                                    critical=layer.get("critical", threshold.critical))
        warning = self._environ.get(env_name(symptom, "warning"))
        critical = self._environ.get(env_name(symptom, "critical"))
        if warning is not None:
            threshold = replace(threshold, warning=_parse_env_number(symptom, "warning", warning))
        if critical is not None:
            threshold = replace(threshold,
                                critical=_parse_env_number(symptom, "critical", critical))
        return threshold

    def symptoms(self) -> list[str]:
        """Every symptom with a declared default, sorted."""
        return sorted(self._defaults)


def _parse_env_number(symptom: str, level: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        from stackmedic.errors import ConfigError

        raise ConfigError(
            f"{env_name(symptom, level)}: expected a number, got {raw!r}", key=symptom
        ) from None
