"""Deprecated: :mod:`tc_clip.callbacks.prediction_writer`."""

from tc_clip._deprecation import moved

__getattr__, __dir__ = moved(__name__, {name: "tc_clip.callbacks.prediction_writer" for name in (
    "PROGRESS", "PredictionWriter", "csv_header", "csv_line", "read_progress", "write_csv", "write_json",
)})
