"""TC-CLIP model: vision encoder with Temporal Contextualization, text encoder with VP."""

from tc_clip.model.config import TCCLIPConfig
from tc_clip.model.factory import TINY_CLIP_CFG, CLIPWeightsError, create_clip, load_clip_state_dict
from tc_clip.model.serialization import CheckpointError, safe_load, torchscript_state_dict
from tc_clip.model.tcclip import TCCLIP
from tc_clip.model.text import parse_class_name
from tc_clip.model.vision import TCVisionEncoder, VisionOutput

__all__ = [
    "TCCLIP",
    "TCCLIPConfig",
    "TCVisionEncoder",
    "VisionOutput",
    "CLIPWeightsError",
    "CheckpointError",
    "safe_load",
    "torchscript_state_dict",
    "TINY_CLIP_CFG",
    "create_clip",
    "load_clip_state_dict",
    "parse_class_name",
]
