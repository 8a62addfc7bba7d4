"""Deprecated: :mod:`tc_clip.callbacks.non_finite_guard`."""

from tc_clip._deprecation import moved

__getattr__, __dir__ = moved(__name__, {name: "tc_clip.callbacks.non_finite_guard" for name in (
    "NonFiniteError", "NonFiniteGuard", "non_finite_tensors",
)})
