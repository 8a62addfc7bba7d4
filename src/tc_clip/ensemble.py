"""Deprecated: the WiSE-FT weight arithmetic moved to :mod:`tc_clip.model.wise`."""

from tc_clip._deprecation import moved

__getattr__, __dir__ = moved(__name__, {name: "tc_clip.model.wise" for name in (
    "TC_CLIP_ONLY_PREFIXES", "StateDict", "check_alpha", "check_alphas", "check_clip_state", "ensembled",
    "ensembled_copy", "ensembled_state_dict", "find_tcclip", "has_clip_counterpart", "interpolate",
    "load_clip_state", "restore", "save_ensembled", "shared_keys",
)})
