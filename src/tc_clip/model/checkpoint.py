"""Reading the TC-CLIP authors' released checkpoints (SPEC.md section 4) without running pickled code."""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from typing import Any

import torch

from tc_clip.model.config import TCCLIPConfig
from tc_clip.model.serialization import CheckpointError, safe_load


def load_release_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a release ``.pth`` as data (:func:`~tc_clip.model.serialization.safe_load`); its pickled
    OmegaConf ``config`` comes back as inert records (see :func:`release_config`)."""
    if "://" not in str(path) and not os.path.isfile(path):
        raise FileNotFoundError(f"release checkpoint not found: {path}")
    blob = safe_load(path)
    if not isinstance(blob, dict) or not isinstance(blob.get("model"), dict):
        raise CheckpointError(path, "not a TC-CLIP release checkpoint (expected a dict with a 'model' state dict)")
    return blob


_VISION_TOP = ("class_embedding", "positional_embedding", "proj", "conv1.weight", "ln_pre.", "ln_post.")
_IGNORED = ("prompt_learner.token_prefix", "prompt_learner.token_suffix", "prompt_learner.complete_text_embeddings")


def convert_release_state_dict(release: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Map the release layout onto TCCLIP's keys; also infer the switches the shapes determine.

    Returns the converted state dict and the switches its shapes fix (``n_ctx``, ``positional_embedding``,
    ``num_frames``, ``use_vp``, ``local_global_bias``, and ``vp_blocks``: how many VP blocks it holds).
    Unknown keys raise one error.
    """
    state: dict[str, torch.Tensor] = {}
    qkv: dict[int, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in release.items():
        key = key.removeprefix("module.")
        if key.startswith(_IGNORED):
            continue
        if key == "logit_scale":
            state["logit_scale"] = value
        elif key == "prompt_learner.ctx":
            state["prompt_ctx"] = value
        elif key.startswith("image_encoder."):
            sub = key.removeprefix("image_encoder.")
            m = re.fullmatch(r"transformer\.resblocks\.(\d+)\.attn\.([qkv])_proj\.(weight|bias)", sub)
            if m:
                qkv.setdefault(int(m[1]), {})[f"{m[2]}.{m[3]}"] = value
                continue
            m = re.fullmatch(r"transformer\.resblocks\.(\d+)\.attn\.local_global_bias_table", sub)
            if m:
                state[f"visual.local_global_bias.{m[1]}"] = value
            elif sub.startswith(_VISION_TOP) or sub.startswith("transformer.resblocks."):
                state[f"visual.{sub}"] = value
            else:
                unknown.append(key)
        elif key.startswith("text_encoder."):
            sub = key.removeprefix("text_encoder.")
            if sub.startswith("prompt_generation_layer."):
                state["vp_blocks." + sub.removeprefix("prompt_generation_layer.")] = value
            elif sub.startswith(("positional_embedding", "text_projection", "ln_final.", "transformer.resblocks.")):
                state[sub] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    for layer, parts in sorted(qkv.items()):
        missing = [p for p in ("q.weight", "k.weight", "v.weight", "q.bias", "k.bias", "v.bias") if p not in parts]
        if missing:
            unknown.append(f"image_encoder.transformer.resblocks.{layer}.attn (missing {', '.join(missing)})")
            continue
        prefix = f"visual.transformer.resblocks.{layer}.attn."
        state[prefix + "in_proj_weight"] = torch.cat([parts["q.weight"], parts["k.weight"], parts["v.weight"]])
        state[prefix + "in_proj_bias"] = torch.cat([parts["q.bias"], parts["k.bias"], parts["v.bias"]])
    if unknown:
        raise ValueError(f"release checkpoint has keys this loader does not know: {', '.join(unknown[:20])}")

    inferred: dict[str, Any] = {}
    if "prompt_ctx" in state:
        inferred["n_ctx"] = state["prompt_ctx"].shape[0]
    else:
        inferred.update(n_ctx=0, use_vp=False)
    pos = state.get("visual.positional_embedding")
    if pos is not None and pos.ndim == 3:
        inferred.update(positional_embedding="joint", num_frames=pos.shape[0])
    vp_count = len({k.split(".")[1] for k in state if k.startswith("vp_blocks.")})
    inferred["vp_blocks"] = vp_count
    if vp_count == 0:
        inferred["use_vp"] = False
    inferred["local_global_bias"] = any(k.startswith("visual.local_global_bias.") for k in state)
    return state, inferred


def text_layer_count(state: dict[str, torch.Tensor]) -> int:
    """Number of CLIP text layers in a converted state dict."""
    layers = {int(m[1]) for k in state if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))}
    return max(layers) + 1 if layers else 0


#: release config key -> TCCLIPConfig field, for the keys SPEC 4b lists (TC-CLIP files).
_TC_KEYS = {
    "positional_embedding_type": "positional_embedding",
    "local_global_bias": "local_global_bias",
    "context_token_k": "num_context_tokens",
    "seed_token_a": "seed_ratio",
    "tome_r": "merge_step",
    "n_ctx": "n_ctx",
    "im_stop_grad": "stop_gradient",
    "context_length": "context_length",
    "num_frames": "num_frames",
}
#: the keys that also decide a ViFi-CLIP or vanilla-CLIP model.
_BASELINE_KEYS = ("positional_embedding_type", "context_length", "num_frames")
_BASELINES = {"ViFiCLIP": "a photo of a {}.", "VanillaCLIP": "{}"}


def _find(config: dict[str, Any], key: str, source: str) -> Any:
    """``config[key]`` at the top level, else the one value it has in nested sections; None if absent."""
    if key in config:
        return config[key]
    found: list[tuple[str, Any]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == key:
                    found.append((f"{where}{k}", v))
                walk(v, f"{where}{k}.")

    walk(config, "")
    if len({repr(v) for _, v in found}) > 1:
        places = ", ".join(f"{w}={v!r}" for w, v in found)
        raise CheckpointError(source, f"its config sets {key!r} differently in several places ({places})")
    return found[0][1] if found else None


def _resolve(config: dict[str, Any], value: Any, key: str, source: str) -> Any:
    """Follow an OmegaConf ``${a.b}`` reference (the only interpolation a release value can hold)."""
    for _ in range(10):
        m = re.fullmatch(r"\$\{([\w.]+)\}", value) if isinstance(value, str) else None
        if m is None:
            break
        node: Any = config
        for part in m[1].split("."):
            if not isinstance(node, dict) or part not in node:
                raise CheckpointError(source, f"config key {key!r} refers to {value}, which the config lacks")
            node = node[part]
        value = node
    if value == "???":
        raise CheckpointError(source, f"config key {key!r} is unset ('???')")
    return value


def parse_vp_level(value: Any, num_text_layers: int, source: str) -> list[int]:
    """``prompt_generation_layer_level`` (1-based: ``12``, ``'11+12'``) -> 0-based layer indices."""
    parts = value if isinstance(value, (list, tuple)) else str(value).split("+")
    try:
        levels = [int(str(p).strip()) for p in parts]
    except ValueError:
        raise CheckpointError(source, f"prompt_generation_layer_level={value!r} is not 1-based layer numbers "
                                      "such as 12 or '11+12'") from None
    bad = [lv for lv in levels if not 1 <= lv <= num_text_layers]
    if bad or not levels:
        raise CheckpointError(source, f"prompt_generation_layer_level={value!r} names layers outside "
                                      f"1..{num_text_layers}")
    return sorted(lv - 1 for lv in levels)


def release_settings(config: Any, num_text_layers: int, source: str) -> dict[str, Any]:
    """The :class:`~tc_clip.model.config.TCCLIPConfig` fields a release file's stored config decides
    (SPEC 4b). ``config`` is the file's ``config`` entry as :func:`safe_load` returned it (or None)."""
    from tc_clip.model.serialization import NestingError, to_plain

    if config is None:
        return {}
    try:
        plain = to_plain(config)
    except NestingError as err:
        raise CheckpointError(source, f"its 'config' {err}") from None
    if not isinstance(plain, dict):
        raise CheckpointError(source, f"its 'config' is a {type(plain).__name__}, not a mapping of settings")

    def get(key: str) -> Any:
        return _resolve(plain, _find(plain, key, source), key, source)

    trainer = get("trainer_name") or "TCCLIP"
    if trainer not in ("TCCLIP", *_BASELINES):
        raise CheckpointError(source, f"trainer_name={trainer!r} is not one of TCCLIP, ViFiCLIP, VanillaCLIP")
    keys = _BASELINE_KEYS if trainer in _BASELINES else tuple(_TC_KEYS)
    settings = {_TC_KEYS[k]: v for k in keys if (v := get(k)) is not None}
    if trainer in _BASELINES:
        settings.update(use_tc=False, use_vp=False, prompt_template=_BASELINES[trainer])
        return settings
    tome_d = get("tome_d")
    if tome_d not in (None, 0):
        raise CheckpointError(source, f"tome_d={tome_d!r}: a per-layer merge schedule is not supported "
                                      "(only tome_d=0, a fixed merge step tome_r)")
    level = get("prompt_generation_layer_level")
    if level is not None:
        settings["vp_layers"] = parse_vp_level(level, num_text_layers, source)
    return settings


def _norm(field: str, value: Any, num_text_layers: int) -> Any:
    if field == "vp_layers":
        return sorted(int(i) % num_text_layers for i in value)
    if isinstance(value, float) or field == "seed_ratio":
        return float(value)
    return value


def release_model_config(
    caller: TCCLIPConfig | None,
    overrides: dict[str, Any],
    shapes: dict[str, Any],
    stored: dict[str, Any],
    num_text_layers: int,
    source: str,
    allow_override: bool = False,
) -> TCCLIPConfig:
    """The model config of a release file: what its tensor shapes and stored config say, checked
    against what the caller asked for.

    The caller's values are the ``overrides`` and the fields of ``caller`` that differ from the
    :class:`TCCLIPConfig` defaults. One that contradicts the file raises an error naming every such key,
    unless ``allow_override`` (then the caller's value wins, with a warning naming the keys).
    """
    defaults = TCCLIPConfig()
    base = caller if caller is not None else defaults
    asked = {f.name: getattr(base, f.name) for f in dataclasses.fields(TCCLIPConfig)
             if getattr(base, f.name) != getattr(defaults, f.name)}
    asked.update(overrides)

    vp_blocks = shapes.pop("vp_blocks", 0)
    file_says = dict(stored)
    if shapes.get("n_ctx", 0) and file_says.get("prompt_template") is not None:
        file_says["prompt_template"] = None  # a baseline trained with prompt vectors: "X X X X {name}."
    inconsistent = [f"{k}: config {file_says[k]!r}, tensors {v!r}" for k, v in shapes.items()
                    if k in file_says and _norm(k, file_says[k], num_text_layers) != _norm(k, v, num_text_layers)]
    if inconsistent:
        raise CheckpointError(source, "its stored config contradicts its tensors (" + "; ".join(inconsistent) + ")")
    file_says.update(shapes)
    if vp_blocks:
        layers = file_says.get("vp_layers", asked.get("vp_layers"))
        if layers is None and vp_blocks == 1:
            layers = defaults.vp_layers
        if layers is None or len(layers) != vp_blocks:
            raise CheckpointError(source, f"it holds {vp_blocks} VP blocks but "
                                  + ("no stored config names their layers: pass vp_layers=[...] (0-based)"
                                     if layers is None else f"vp_layers={list(layers)} names {len(layers)}"))
        file_says["vp_layers"] = layers
    else:
        file_says.pop("vp_layers", None)  # VP off: the stored VP level is a default that decides nothing

    conflicts = {k: (file_says[k], v) for k, v in asked.items()
                 if k in file_says and _norm(k, v, num_text_layers) != _norm(k, file_says[k], num_text_layers)}
    if conflicts:
        listed = "; ".join(f"{k}: the file says {f!r}, the caller {c!r}" for k, (f, c) in conflicts.items())
        if not allow_override:
            raise ValueError(f"release checkpoint {source} contradicts the settings asked for ({listed}). Drop "
                             "those settings to use the file's, or pass allow_override=True to force yours")
        warnings.warn(f"OVERRIDING the settings of release checkpoint {source}: {listed}", UserWarning,
                      stacklevel=3)
        for k in conflicts:
            file_says.pop(k)
    return dataclasses.replace(base, **{**asked, **file_says})
