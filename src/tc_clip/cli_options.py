"""Deprecated: :mod:`tc_clip.cli.options`."""

from tc_clip._deprecation import moved

__getattr__, __dir__ = moved(__name__, {name: "tc_clip.cli.options" for name in (
    "FREE_CONFIG", "FREE_OPTIONS", "TRAINING_OPTIONS", "accumulation_for", "auto_precision",
    "checkpoint_model_options",
)})
