"""The model of ``TCCLIPModule(model_folder=...)``: a folder written by ``tc-clip export`` /
``TCCLIP.save_pretrained`` (or a Hub repo id) gives the architecture, switches, vocabulary and weights; the
module's other model options may only agree with it. The frame count is the data's (``data.num_frames`` is
linked to ``model.config.num_frames``): TC-CLIP's weights do not depend on it, except a joint positional table
(one row per frame), where another count is refused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace

from torch import nn

from tc_clip.errors import ConfigError
from tc_clip.model.config import TCCLIPConfig

__all__ = ["folder_model"]


def folder_model(
    folder: str, pretrained: str | None, release_checkpoint: str | None, config: TCCLIPConfig,
    class_names: Sequence[str] | None,
) -> nn.Module:
    """The model of a folder or Hub repo id, run at ``config.num_frames`` (the data's frame count)."""
    from tc_clip.model import TCCLIP  # as the module's own builder: loaded when a model is built

    given = [name for name, value in (("pretrained", pretrained), ("release_checkpoint", release_checkpoint))
             if value]
    if given:
        raise ConfigError(f"model_folder {folder!r} holds the weights: drop model.{' and model.'.join(given)}")
    model = TCCLIP.from_pretrained(folder)
    theirs, default = model.config, TCCLIPConfig()
    contradictions = [
        f"model.config.{f.name}: {getattr(config, f.name)!r} contradicts the folder's {getattr(theirs, f.name)!r}"
        for f in fields(TCCLIPConfig) if f.name not in ("num_frames", "grad_checkpointing")
        and getattr(config, f.name) not in (getattr(theirs, f.name), getattr(default, f.name))
    ]
    if contradictions:
        raise ConfigError(f"model_folder {folder!r} sets the switches; drop (or match) "
                         + "; ".join(contradictions))
    frames = theirs.num_frames
    if config.num_frames != frames and model.visual.joint_positional:
        raise ConfigError(
            f"model_folder {folder!r} has a joint positional table of {frames} frames; data.num_frames "
            f"is {config.num_frames}: set --data.num_frames {frames}"
        )
    model.config = replace(theirs, num_frames=config.num_frames, grad_checkpointing=config.grad_checkpointing)
    model.visual.grad_checkpointing = config.grad_checkpointing
    if class_names:
        model.set_class_names(list(class_names))
    return model
