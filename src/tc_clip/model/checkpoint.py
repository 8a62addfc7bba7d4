"""Reading the TC-CLIP authors' released checkpoints (SPEC.md section 4) without running pickled code."""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch", "dtype"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
}
_DTYPES = {"float16", "float32", "float64", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool"}


class OpaqueObject:
    """Stands in for any pickled object of a class we do not trust (e.g. an OmegaConf config).

    Nothing of the original class runs: the constructor arguments and state are only recorded.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"OpaqueObject({self.qualname})"


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS or (module == "torch" and name in _DTYPES):
            return super().find_class(module, name)
        # Any other global becomes an inert placeholder class: no pickled code is executed.
        return type(name, (OpaqueObject,), {"qualname": f"{module}.{name}"})


class _SafePickleModule:
    """A ``pickle_module`` for ``torch.load`` whose unpickler never imports untrusted globals."""

    Unpickler = _SafeUnpickler
    load = staticmethod(pickle.load)
    __name__ = "tc_clip_safe_pickle"


def load_release_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load`` a release ``.pth``; pickled config objects come back as :class:`OpaqueObject`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"release checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_SafePickleModule)
    except Exception as err:  # noqa: BLE001 - reported with the file name
        raise ValueError(f"cannot read release checkpoint {path}: {err}") from err
    if not isinstance(blob, dict) or not isinstance(blob.get("model"), dict):
        raise ValueError(f"{path} is not a TC-CLIP release checkpoint (expected a dict with a 'model' state dict)")
    return blob


_VISION_TOP = ("class_embedding", "positional_embedding", "proj", "conv1.weight", "ln_pre.", "ln_post.")
_IGNORED = ("prompt_learner.token_prefix", "prompt_learner.token_suffix")


def convert_release_state_dict(release: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Map the release layout onto TCCLIP's keys; also infer the switches the shapes determine.

    Returns the converted state dict and config overrides (``n_ctx``, ``positional_embedding``,
    ``num_frames``, ``use_vp``, ``vp_layers``, ``local_global_bias``). Unknown keys raise one error.
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
    if vp_count == 0:
        inferred["use_vp"] = False
    elif vp_count > 1:
        raise ValueError(
            f"release checkpoint has {vp_count} VP blocks; pass vp_layers=[...] naming their layers"
        )
    inferred["local_global_bias"] = any(k.startswith("visual.local_global_bias.") for k in state)
    return state, inferred
