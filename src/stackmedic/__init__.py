"""stackmedic: production troubleshooting guides turned into working software."""

from stackmedic.findings import Finding, Remedy, Severity

__version__ = "0.1.0"

__all__ = ["Finding", "Remedy", "Severity", "__version__"]
