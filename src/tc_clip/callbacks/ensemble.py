"""Deprecated: the WiSE-FT callbacks are :mod:`tc_clip.callbacks.weight_ensemble` and
:mod:`tc_clip.callbacks.weight_sweep`; the evaluation loop is :mod:`tc_clip.lightning.evaluation`."""

from tc_clip._deprecation import moved

__getattr__, __dir__ = moved(__name__, {
    "WeightSpaceEnsemble": "tc_clip.callbacks.weight_ensemble",
    "WeightSpaceSweep": "tc_clip.callbacks.weight_sweep",
    "DEFAULT_ALPHAS": "tc_clip.callbacks.weight_sweep",
    "evaluate": "tc_clip.lightning.evaluation",
    "sweep": "tc_clip.lightning.evaluation",
})
