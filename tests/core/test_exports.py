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
    assert list(names) == sorted(names, key=lambda n: (n.lower(), n)) or \
        list(names) == sorted(names)
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing
