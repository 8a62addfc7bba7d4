"""The open_clip architectures a file may ask for: plain ViT CLIPs, every key typed and bounded.

A model file (``TCCLIP.save``, a Lightning checkpoint's hyper-parameters) is data, yet the open_clip config
it stores decides what ``open_clip.CLIP(**cfg)`` builds: ``timm_model_name="hf-hub:..."`` or
``hf_model_name`` make open_clip/timm/transformers fetch configs, weights or code from the Hub. Only the keys
TC-CLIP's own architecture uses (open_clip's ``CLIPVisionCfg``/``CLIPTextCfg`` of the ViT models) pass
:func:`check_clip_cfg`; a name passes :func:`check_model_name` only if it is ``"tiny"`` or one of
open_clip's bundled configs (never ``hf-hub:`` or ``local-dir:``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tc_clip.errors import UserError

__all__ = ["ClipConfigError", "check_clip_cfg", "check_model_name"]


class ClipConfigError(UserError, ValueError):
    """An architecture a file may not ask for; ``key`` is the dotted key at fault (``vision_cfg.width``;
    empty for the config itself)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key, self.reason = key, reason
        super().__init__(f"{key or 'the config'}: {reason}")

    def under(self, name: str) -> str:
        """The message with the key below ``name`` (``clip_cfg.vision_cfg.width: ...``)."""
        return f"{name}{'.' if self.key else ''}{self.key}: {self.reason}"


def _int(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is int and low <= v <= high


def _float(low: float, high: float) -> Callable[[Any], bool]:
    return lambda v: type(v) in (int, float) and low <= v <= high


def _size(v: Any) -> bool:
    return _int(1, 4096)(v) or (isinstance(v, (list, tuple)) and len(v) == 2 and all(_int(1, 4096)(x) for x in v))


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


_WIDTH = _int(1, 8192)
_LAYERS = _int(1, 256)
_TOP: dict[str, tuple[Callable[[Any], bool], str]] = {
    "embed_dim": (_WIDTH, "an int in 1..8192"),
    "quick_gelu": (lambda v: type(v) is bool, "true or false"),
}
_VISION: dict[str, tuple[Callable[[Any], bool], str]] = {
    "image_size": (_size, "an int in 1..4096 or a pair of them"),
    "layers": (_LAYERS, "an int in 1..256"),
    "width": (_WIDTH, "an int in 1..8192"),
    "head_width": (_WIDTH, "an int in 1..8192"),
    "patch_size": (_int(1, 4096), "an int in 1..4096"),
    "mlp_ratio": (_float(0.01, 64.0), "a number in 0.01..64"),
    "ls_init_value": (_optional(_float(0.0, 1e3)), "null or a number in 0..1000"),
}
_TEXT: dict[str, tuple[Callable[[Any], bool], str]] = {
    "context_length": (_int(1, 4096), "an int in 1..4096"),
    "vocab_size": (_int(1, 1 << 20), f"an int in 1..{1 << 20}"),
    "width": (_WIDTH, "an int in 1..8192"),
    "heads": (_int(1, 1024), "an int in 1..1024"),
    "layers": (_LAYERS, "an int in 1..256"),
    "mlp_ratio": (_float(0.01, 64.0), "a number in 0.01..64"),
    "ls_init_value": (_optional(_float(0.0, 1e3)), "null or a number in 0..1000"),
}
_REQUIRED = {"": ("embed_dim", "vision_cfg", "text_cfg"), "vision_cfg.": ("image_size", "layers", "width",
             "patch_size"), "text_cfg.": ("context_length", "vocab_size", "width", "heads", "layers")}


def _check_section(cfg: Any, schema: dict, prefix: str, nested: tuple[str, ...] = ()) -> None:
    if not isinstance(cfg, Mapping):
        raise ClipConfigError(prefix.rstrip("."), f"is a {type(cfg).__name__}, not a mapping")
    for key in cfg:
        if not isinstance(key, str) or (key not in schema and key not in nested):
            raise ClipConfigError(f"{prefix}{key}", "is not an architecture key tc-clip builds (a plain ViT CLIP "
                                  f"takes {', '.join([*schema, *nested])})")
        if key in schema and not schema[key][0](cfg[key]):
            raise ClipConfigError(f"{prefix}{key}", f"is {cfg[key]!r}; expected {schema[key][1]}")
    missing = [k for k in _REQUIRED[prefix] if k not in cfg]
    if missing:
        raise ClipConfigError(f"{prefix}{missing[0]}", "is missing")


def check_clip_cfg(cfg: Any) -> dict[str, Any]:
    """``cfg`` itself if it describes a plain open_clip ViT CLIP with known, typed, bounded keys; else
    :class:`ClipConfigError` naming the first key at fault (the config's name is the caller's to add)."""
    _check_section(cfg, _TOP, "", ("vision_cfg", "text_cfg"))
    _check_section(cfg["vision_cfg"], _VISION, "vision_cfg.")
    _check_section(cfg["text_cfg"], _TEXT, "text_cfg.")
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    if vision["width"] % vision.get("head_width", 64):
        raise ClipConfigError("vision_cfg.head_width", f"{vision.get('head_width', 64)} does not divide the "
                              f"width {vision['width']}")
    if text["width"] % text["heads"]:
        raise ClipConfigError("text_cfg.heads", f"{text['heads']} does not divide the width {text['width']}")
    return cfg


def check_model_name(model_name: Any) -> str | dict[str, Any]:
    """``model_name`` if a file may ask for it: ``"tiny"``, a bundled open_clip config name, or a config
    dict that passes :func:`check_clip_cfg`. Names that open_clip resolves elsewhere (``hf-hub:``,
    ``local-dir:``) raise :class:`ClipConfigError`."""
    if isinstance(model_name, Mapping):
        return check_clip_cfg(model_name)
    import open_clip

    if not isinstance(model_name, str) or (model_name != "tiny" and model_name not in open_clip.list_models()):
        raise ClipConfigError("", f"{model_name!r} is neither 'tiny' nor an open_clip model bundled "
                              "with the library (a file may not name a Hub repository or a folder)")
    return model_name
