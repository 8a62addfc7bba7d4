"""Deprecated: the fit callbacks are in :mod:`tc_clip.callbacks` (one file each)."""

from tc_clip._deprecation import moved

__getattr__, __dir__ = moved(__name__, {
    "FitSummary": "tc_clip.callbacks.fit_summary",
    "NovelAtBestBase": "tc_clip.callbacks.novel_at_best_base",
    "ValidateAtFitEnd": "tc_clip.callbacks.validate_at_fit_end",
    "monitored_checkpoint": "tc_clip.callbacks.monitored",
})
