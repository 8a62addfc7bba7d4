"""Every Lightning callback of tc-clip, one file each: WiSE-FT ensembling and its ratio sweep, the
predictions writer, and the callbacks ``tc-clip fit`` adds (validation at the end of fit, base-to-novel at
the best-base epoch, the fit summary, the non-finite guard, ``last.ckpt`` and the sampler's position)."""

from tc_clip.callbacks.fit_summary import FitSummary
from tc_clip.callbacks.last_checkpoint import LastCheckpoint
from tc_clip.callbacks.monitored import monitored_checkpoint
from tc_clip.callbacks.non_finite_guard import NonFiniteError, NonFiniteGuard
from tc_clip.callbacks.novel_at_best_base import NovelAtBestBase
from tc_clip.callbacks.prediction_writer import PredictionWriter
from tc_clip.callbacks.sampler_resume import SamplerResume
from tc_clip.callbacks.validate_at_fit_end import ValidateAtFitEnd
from tc_clip.callbacks.weight_ensemble import WeightSpaceEnsemble
from tc_clip.callbacks.weight_sweep import DEFAULT_ALPHAS, WeightSpaceSweep

__all__ = [
    "DEFAULT_ALPHAS",
    "FitSummary",
    "LastCheckpoint",
    "NonFiniteError",
    "NonFiniteGuard",
    "NovelAtBestBase",
    "PredictionWriter",
    "SamplerResume",
    "ValidateAtFitEnd",
    "WeightSpaceEnsemble",
    "WeightSpaceSweep",
    "monitored_checkpoint",
]
