"""TC-CLIP: Temporally Contextualized CLIP for video action recognition.

``TCCLIP`` and ``TCCLIPConfig`` load with :mod:`tc_clip.model` when first used, so the torch-free parts
(:mod:`tc_clip.results`) import without torch.
"""

from typing import Any

from tc_clip._version import __version__ as __version__

__all__ = ["TCCLIP", "TCCLIPConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tc_clip import model

        return getattr(model, name)
    raise AttributeError(f"module 'tc_clip' has no attribute {name!r}")
