"""The old import paths of the data layer, kept for one release: every use warns and forwards.

Until the data layer was split into rooms, ``tc_clip.data.datamodule`` held the benchmark modules, the
zero-shot suite and the split shapes, ``tc_clip.data.base_novel`` the published base/novel split and
``tc_clip.data.torchcodec_backend`` the decoder choice. Those modules now only forward (with
:func:`moved_getattr` or :func:`warn_moved`); removing them is removing this file's users.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["moved_getattr", "warn_moved"]


def warn_moved(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{old} is deprecated: use {new}", DeprecationWarning, stacklevel=stacklevel)


def moved_getattr(module: str, moved: Mapping[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for names that left ``module``: ``moved[name]`` is ``(where it is now,
    where to import it from)``; using the old name warns and gives the same object."""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        home, public = moved[name]
        warn_moved(f"{module}.{name}", f"{public}.{name}")
        return getattr(importlib.import_module(home), name)

    return __getattr__
