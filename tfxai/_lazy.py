"""Lazy re-exports for package ``__init__`` files: names are imported from their module on first use,
so importing a package (``tfxai``, ``tfxai.data`` ...) loads nothing heavy."""
from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]):
    """(``__getattr__``, ``__all__``) for ``package``; ``exports`` maps a module name (relative to
    ``package`` when it starts with ".") to the names it provides."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name in where:
            module = where[name]
            return getattr(importlib.import_module(module, package if module.startswith(".") else None), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(where)
