"""Weight-space ensembling of a fine-tuned TC-CLIP with the CLIP it started from (WiSE-FT, SPEC §6).

``θ = (1 − α)·θ_CLIP + α·θ_finetuned`` for every parameter CLIP has (``visual.*``, ``transformer.*``,
``token_embedding.weight``, ``positional_embedding``, ``ln_final.*``, ``text_projection``,
``logit_scale``); the parameters without CLIP counterpart (``visual.local_global_bias.*``,
``prompt_ctx``, ``vp_blocks.*``) keep their fine-tuned values. α = 0 is CLIP (plus those new parts),
α = 1 the fine-tuned model. With ``positional_embedding="joint"`` the model's ``[T, N, D]`` table is
interpolated against CLIP's ``[N, D]`` table repeated over T (which is how the joint table starts).

Notebook use::

    from tc_clip.model.wise import load_clip_state, interpolate, restore, ensembled

    clip_state = load_clip_state("ViT-B-16.pt")          # or load_clip_state(model=model, ...)
    with ensembled(model, clip_state, alpha=0.7):        # fine-tuned weights come back on exit
        logits = model(video)
    original = interpolate(model, clip_state, 0.7)       # the same by hand ...
    restore(model, original)                             # ... and back

Running a model at several ratios: :func:`tc_clip.lightning.evaluation.sweep` (what the
:class:`~tc_clip.callbacks.WeightSpaceSweep` callback runs); its files and the trade-off plot live in
:mod:`tc_clip.results` (``tc-clip report``).

Everything here is plain deterministic arithmetic: under DDP every process computes bit-identical
ensembled weights from its own (identical) copies, no communication is needed.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from tc_clip.model.factory import create_clip, load_clip_state_dict
from tc_clip.model.tcclip import TCCLIP

#: Parameters of TC-CLIP with no counterpart in CLIP: always taken from the fine-tuned model.
TC_CLIP_ONLY_PREFIXES: tuple[str, ...] = ("visual.local_global_bias.", "prompt_ctx", "vp_blocks.")
#: Entries of some CLIP files that are not weights (dropped before matching).
_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
#: The table broadcast over frames when the model uses the joint (``[T, N, D]``) positional embedding.
_JOINT_KEY = "visual.positional_embedding"

StateDict = dict[str, Tensor]


# ------------------------------------------------------------------------------------------ weights
def check_alpha(alpha: float) -> float:
    """``alpha`` as a float, or a ``ValueError`` unless it is a number in [0, 1]."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise ValueError(f"the ensembling ratio alpha must be a number in [0, 1], got {alpha!r}")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:  # also rejects NaN
        raise ValueError(f"the ensembling ratio alpha must be in [0, 1], got {alpha}")
    return alpha


def check_alphas(alphas: Iterable[float]) -> list[float]:
    """A non-empty list of distinct ratios in [0, 1] (order kept), or a ``ValueError``."""
    if alphas is None or isinstance(alphas, (str, bytes)):
        raise ValueError(f"alphas must be a list of ratios in [0, 1], got {alphas!r}")
    out = [check_alpha(a) for a in alphas]
    if not out:
        raise ValueError("alphas is empty: give at least one ensembling ratio in [0, 1]")
    if len(set(out)) != len(out):
        raise ValueError(f"alphas lists a ratio twice: {out}")
    return out


def has_clip_counterpart(key: str) -> bool:
    """True for state-dict keys that CLIP also has (see :data:`TC_CLIP_ONLY_PREFIXES`)."""
    return not key.startswith(TC_CLIP_ONLY_PREFIXES)


def _model_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The model's persistent parameters and buffers, as the live tensors (not copies)."""
    return model.state_dict(keep_vars=True)


def shared_keys(model: nn.Module) -> list[str]:
    """The model's state-dict keys that have a CLIP counterpart (floating-point entries only)."""
    return [k for k, t in _model_tensors(model).items() if has_clip_counterpart(k) and t.is_floating_point()]


def _clean_clip_state(clip_state: Mapping[str, Tensor]) -> StateDict:
    if not isinstance(clip_state, Mapping):
        raise TypeError(f"clip_state must be a state dict (a mapping of names to tensors), got "
                        f"{type(clip_state).__name__}")
    return {k.removeprefix("module."): v for k, v in clip_state.items() if k not in _NON_WEIGHT_KEYS}


def _shapes_match(key: str, own: Tensor, clip: Tensor) -> bool:
    if tuple(own.shape) == tuple(clip.shape):
        return True
    # joint positional table [T, N, D] against CLIP's [N, D]
    return key == _JOINT_KEY and own.dim() == clip.dim() + 1 and tuple(own.shape[1:]) == tuple(clip.shape)


def check_clip_state(model: nn.Module, clip_state: Mapping[str, Tensor]) -> StateDict:
    """Check that ``clip_state`` holds every CLIP-shared parameter of ``model`` with a matching shape
    and nothing the model lacks; raise one ``ValueError`` listing every offending key. Returns the
    cleaned state (``module.`` prefixes and non-weight entries such as ``input_resolution`` removed)."""
    state = _clean_clip_state(clip_state)
    own = _model_tensors(model)
    shared = [k for k in own if has_clip_counterpart(k)]
    missing = [k for k in shared if k not in state]
    unexpected = [k for k in state if k not in own or not has_clip_counterpart(k)]
    wrong = []
    for k in shared:
        if k in state:
            v = state[k]
            if not isinstance(v, Tensor):
                wrong.append(f"{k}: not a tensor ({type(v).__name__})")
            elif not _shapes_match(k, own[k], v):
                expected = tuple(own[k].shape)
                hint = f" or {expected[1:]}" if k == _JOINT_KEY and len(expected) == 3 else ""
                wrong.append(f"{k}: model {expected}{hint}, CLIP weights {tuple(v.shape)}")
    if missing or unexpected or wrong:
        parts = ["the CLIP weights do not fit the model (wrong architecture or wrong file?)"]
        listed = (("wrong shapes", wrong), ("missing keys", missing), ("unexpected keys", unexpected))
        for title, keys in listed:
            if keys:
                shown = "; ".join(keys[:20]) + (f" ... ({len(keys)} in all)" if len(keys) > 20 else "")
                parts.append(f"{title}: {shown}")
        raise ValueError("\n  ".join(parts))
    return state


def _mix(clip: Tensor, finetuned: Tensor, alpha: float) -> Tensor:
    """``(1 − α)·clip + α·finetuned`` computed in at least fp32, returned in the fine-tuned dtype."""
    work = torch.promote_types(finetuned.dtype, torch.float32)
    clip = clip.to(device=finetuned.device, dtype=work)
    mixed = (1.0 - alpha) * clip + alpha * finetuned.to(work)
    return mixed.expand_as(finetuned).to(finetuned.dtype)


def interpolate(
    model: nn.Module, clip_state: Mapping[str, Tensor], alpha: float, inplace: bool = True
) -> StateDict:
    """Weight-space ensembling of ``model`` (a :class:`~tc_clip.model.TCCLIP`) with CLIP's weights.

    Every CLIP-shared entry becomes ``(1 − α)·θ_CLIP + α·θ_model`` (computed in fp32 or wider, stored in
    the parameter's dtype, on its device); the TC-CLIP-only parameters are left as they are. The shapes
    and ``alpha`` are checked before anything changes.

    Returns, with ``inplace=True`` (the model's tensors are updated in place), the previous values of
    every changed entry: ``restore(model, returned)`` (or ``model.load_state_dict(returned,
    strict=False)``) undoes it. With ``inplace=False`` the model is untouched and the ensembled values
    of the changed entries are returned (load them with ``load_state_dict(..., strict=False)``).
    """
    alpha = check_alpha(alpha)
    state = check_clip_state(model, clip_state)
    own = _model_tensors(model)
    out: StateDict = {}
    with torch.inference_mode(False), torch.no_grad():
        for key, tensor in own.items():
            if key not in state or not tensor.is_floating_point():
                continue
            mixed = _mix(state[key], tensor.detach(), alpha)
            if inplace:
                out[key] = tensor.detach().clone()
                tensor.copy_(mixed)  # in place: bumps the version counter, so text caches are rebuilt
            else:
                out[key] = mixed
    return out


def ensembled_state_dict(model: nn.Module, clip_state: Mapping[str, Tensor], alpha: float) -> StateDict:
    """The full state dict of ``model`` ensembled with ``alpha`` (the model itself is not changed)."""
    mixed = interpolate(model, clip_state, alpha, inplace=False)
    return {k: mixed.get(k, v.detach().clone()) for k, v in model.state_dict().items()}


def restore(model: nn.Module, original: Mapping[str, Tensor]) -> None:
    """Put back the values :func:`interpolate` returned (in place, dtype and device kept)."""
    own = _model_tensors(model)
    unknown = [k for k in original if k not in own]
    if unknown:
        raise KeyError(f"restore(): the model has no entries {unknown[:10]}")
    with torch.inference_mode(False), torch.no_grad():
        for key, value in original.items():
            own[key].copy_(value.to(device=own[key].device, dtype=own[key].dtype))


@contextlib.contextmanager
def ensembled(model: nn.Module, clip_state: Mapping[str, Tensor], alpha: float) -> Iterator[nn.Module]:
    """Context manager: ``model`` holds the ensembled weights inside the block, its own weights after
    (also when the block raises)."""
    original = interpolate(model, clip_state, alpha)
    try:
        yield model
    finally:
        restore(model, original)


def ensembled_copy(model: nn.Module, clip_state: Mapping[str, Tensor], alpha: float) -> nn.Module:
    """A deep copy of ``model`` holding the ensembled weights (the model is not changed)."""
    mixed = interpolate(model, clip_state, alpha, inplace=False)
    clone = copy.deepcopy(model)
    restore(clone, mixed)
    return clone


def save_ensembled(
    model: nn.Module, clip_state: Mapping[str, Tensor], alpha: float, path: str | os.PathLike
) -> None:
    """Write the ensembled model with :meth:`TCCLIP.save` (load it with ``TCCLIP.load``): the one way
    to get ensembled weights into a file on purpose."""
    ensembled_copy(model, clip_state, alpha).save(path)


def load_clip_state(
    clip_weights: str | os.PathLike | Mapping[str, Tensor] | None = None,
    model: nn.Module | None = None,
    model_name: str | dict | None = None,
) -> StateDict:
    """CLIP's weights as a state dict (CPU tensors) for ensembling.

    ``clip_weights`` is a state dict, a local file (OpenAI's TorchScript ``ViT-B-16.pt``, a state dict or
    an open_clip checkpoint; read with :func:`tc_clip.model.load_clip_state_dict`), or an open_clip hub
    tag such as ``"openai"`` together with the open_clip ``model_name`` (``"ViT-B-16"``; e.g. the
    LightningModule's ``hparams.model_name``), fetched with :func:`tc_clip.model.create_clip` (network or
    open_clip's cache). With ``model`` given, the result is checked against it (shapes, missing and
    unexpected keys).
    """
    if clip_weights is None:
        raise ValueError(
            "no CLIP weights to ensemble with: give the CLIP file the model was fine-tuned from "
            "(e.g. clip_weights='/weights/ViT-B-16.pt')"
        )
    if isinstance(clip_weights, Mapping):
        state = dict(clip_weights)
    else:
        path = Path(clip_weights).expanduser()
        if path.is_file():
            state = load_clip_state_dict(path)
        else:
            if model_name is None or isinstance(model_name, dict) or model_name == "tiny":
                raise ValueError(
                    f"CLIP weights {str(clip_weights)!r}: no such file; an open_clip hub tag also needs the "
                    f"open_clip model name (model_name='ViT-B-16'), got {model_name!r}"
                )
            clip, _ = create_clip(model_name, str(clip_weights))
            state = clip.state_dict()
    state = {k: v.detach().cpu() if isinstance(v, Tensor) else v for k, v in state.items()}
    if model is not None:
        state = check_clip_state(model, state)
    return _clean_clip_state(state)


def find_tcclip(module: nn.Module) -> tuple[str, nn.Module]:
    """``(prefix, model)``: the :class:`~tc_clip.model.TCCLIP` inside ``module`` (``module.model`` for
    :class:`~tc_clip.lightning.TCCLIPModule`) and the prefix of its keys in ``module.state_dict()``."""
    if isinstance(module, TCCLIP):
        return "", module
    inner = getattr(module, "model", None)
    if isinstance(inner, TCCLIP):
        return "model.", inner
    for name, sub in module.named_modules():
        if isinstance(sub, TCCLIP):
            return f"{name}.", sub
    raise TypeError(f"{type(module).__name__} holds no TCCLIP model to ensemble")
