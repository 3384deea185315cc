"""stackmedic's exceptions.

    StackmedicError                 base; `str(err)` is a one-line message for users
    ├── ConfigError                 a stack file or setting is wrong (.path, .line, .key)
    │   └── ConfigErrors            several independent mistakes found in one pass (.errors)
    ├── RegistrationError           a check declared something invalid (.check)
    ├── UnknownSymptomError         an id that is not in the symptom catalogue (.symptom)
    └── ProbeError                  a probe could not gather facts (.component)

Third-party errors (httpx, psycopg, redis, OSError) are translated at the probe
boundary into facts or one of these; callers never catch driver errors.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "ConfigErrors",
    "ProbeError",
    "RegistrationError",
    "StackmedicError",
    "UnknownSymptomError",
]


class StackmedicError(Exception):
    """Base of every error stackmedic raises on purpose."""


class ConfigError(StackmedicError):
    """A stack file, threshold or setting is invalid.

    Formats as `path:line: key: message` with whatever parts are known.
    """

    def __init__(
        self, message: str, *, path: str | None = None, line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.key = key
        super().__init__(str(self))

    @property
    def errors(self) -> tuple[ConfigError, ...]:
        """Every mistake this error stands for, each one line: here, only itself."""
        return (self,)

    @property
    def where(self) -> str:
        """The `path:line: key: ` prefix: names from the file's structure, never a value."""
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        key = f"{self.key}: " if self.key and not self.message.startswith(self.key) else ""
        return f"{where}{key}"

    def __str__(self) -> str:
        return f"{self.where}{self.message}"


class ConfigErrors(ConfigError):
    """Several independent mistakes in one stack file, so one run shows them all.

    Its path, line, key and message are the first error's; `str()` is one line each.
    """

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self._errors = tuple(errors)
        first = self._errors[0]
        super().__init__(first.message, path=first.path, line=first.line, key=first.key)

    @property
    def errors(self) -> tuple[ConfigError, ...]:
        return self._errors

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self._errors)


class RegistrationError(StackmedicError):
    """A check or probe declared something invalid when it registered."""

    def __init__(self, check: str, message: str) -> None:
        self.check = check
        super().__init__(f"check {check!r}: {message}")


class UnknownSymptomError(StackmedicError):
    """A symptom id is not in the catalogue."""

    def __init__(self, symptom: str, hint: str = "") -> None:
        self.symptom = symptom
        suffix = f" (did you mean {hint!r}?)" if hint else ""
        super().__init__(f"unknown symptom id {symptom!r}{suffix}")


class ProbeError(StackmedicError):
    """A probe could not gather its facts; the runner turns this into `unknown`."""

    def __init__(self, component: str, message: str) -> None:
        self.component = component
        super().__init__(message)
