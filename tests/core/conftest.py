"""Core tests use the scripted `fake` component kind."""

import tests.core.fakeprobe  # noqa: F401  (registers the kind)
