"""Deprecated: the checkpoint callbacks are in :mod:`tc_clip.callbacks`, the run folders and ``--ckpt_path``
in :mod:`tc_clip.cli.runs`, and the one checkpoint error is :class:`tc_clip.model.CheckpointError`."""

from tc_clip._deprecation import moved

__getattr__, __dir__ = moved(__name__, {
    "CheckpointError": "tc_clip.model",
    "LastCheckpoint": "tc_clip.callbacks.last_checkpoint",
    "SamplerResume": "tc_clip.callbacks.sampler_resume",
    **{name: "tc_clip.cli.runs" for name in (
        "ContinuingCSVLogger", "check_ckpt_path", "find_last_checkpoint", "resolve_ckpt_path", "resume_point",
        "validate_checkpoint",
    )},
})
