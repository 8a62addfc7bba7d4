"""Lightning callbacks shipped with tc-clip."""

from tc_clip.callbacks.predict_writer import PredictionWriter

__all__ = ["PredictionWriter"]
