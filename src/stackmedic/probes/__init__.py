"""One module per component kind; each defines a `Probe` (see `stackmedic.checks`).

Modules here are imported by `stackmedic.checks.load_probes()`; adding a kind is
adding a file here plus its runbooks.
"""
