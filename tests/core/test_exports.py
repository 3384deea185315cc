"""Public surfaces are deliberate: `__all__` is sorted and names what really exists."""

import importlib
import pkgutil

import pytest

import stackmedic

PUBLIC = sorted(
    name for name in
    ["stackmedic", *(f"stackmedic.{m.name}" for m in pkgutil.iter_modules(stackmedic.__path__)
                     if not m.name.startswith("_") and m.name not in ("cli", "__main__"))]
)


def _isort_order(name: str) -> tuple[int, str]:
    """CONSTANTS, then Classes, then functions, each alphabetical (ruff's RUF022 order)."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("module_name", PUBLIC)
def test_all_is_sorted_and_exported(module_name: str) -> None:
    """Every name in a public module's `__all__` exists, and the list is sorted."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:  # optional extras (e.g. web) may be absent
        pytest.skip(f"{module_name}: {err}")
    names = getattr(module, "__all__", None)
    if names is None:
        pytest.skip(f"{module_name} has no __all__ (not a public surface)")
    assert list(names) == sorted(names, key=_isort_order), "sort __all__ as ruff RUF022 does"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing
