"""Old import paths that keep working for one release: a module whose names moved gets a PEP 562
``__getattr__`` that warns (``DeprecationWarning``, naming the new place) and hands on the moved name.

The new module is imported by name, when the old name is first used: an old path lower in the house
(``tc_clip.lightning.guards``) can point up to where its names now live (``tc_clip.callbacks``) without
importing it, so the import graph keeps flowing downhill.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

#: When the old paths go away.
REMOVED_IN = "the next release"


def warn_moved(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` (a dotted module or name) is now ``new``."""
    warnings.warn(f"{old} moved to {new}; the old path is removed in {REMOVED_IN}", DeprecationWarning,
                  stacklevel=stacklevel)


def moved(old_module: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the module ``old_module`` whose ``names`` moved: ``{name: new module}``,
    or ``{name: "new.module:new_name"}`` for a name that was also renamed.

        __getattr__, __dir__ = moved(__name__, {"NonFiniteGuard": "tc_clip.callbacks.non_finite_guard"})
    """

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        module, _, new_name = target.partition(":")
        new_name = new_name or name
        warn_moved(f"{old_module}.{name}", f"{module}.{new_name}")
        return getattr(importlib.import_module(module), new_name)

    def __dir__() -> list[str]:
        return sorted(set(names) | set(vars(sys.modules[old_module])))

    return __getattr__, __dir__
