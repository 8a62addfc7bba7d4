"""Lightning callbacks shipped with tc-clip."""

from tc_clip.callbacks.ensemble import WeightSpaceEnsemble, WeightSpaceSweep
from tc_clip.callbacks.predict_writer import PredictionWriter

__all__ = ["PredictionWriter", "WeightSpaceEnsemble", "WeightSpaceSweep"]
