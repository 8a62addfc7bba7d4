"""Weight-space ensembling of a fine-tuned TC-CLIP with the CLIP it started from (WiSE-FT, SPEC §6).

``θ = (1 − α)·θ_CLIP + α·θ_finetuned`` for every parameter CLIP has (``visual.*``, ``transformer.*``,
``token_embedding.weight``, ``positional_embedding``, ``ln_final.*``, ``text_projection``,
``logit_scale``); the parameters without CLIP counterpart (``visual.local_global_bias.*``,
``prompt_ctx``, ``vp_blocks.*``) keep their fine-tuned values. α = 0 is CLIP (plus those new parts),
α = 1 the fine-tuned model. With ``positional_embedding="joint"`` the model's ``[T, N, D]`` table is
interpolated against CLIP's ``[N, D]`` table repeated over T (which is how the joint table starts).

Notebook use::

    from tc_clip.ensemble import load_clip_state, interpolate, restore, ensembled

    clip_state = load_clip_state("ViT-B-16.pt")          # or load_clip_state(model=model, ...)
    with ensembled(model, clip_state, alpha=0.7):        # fine-tuned weights come back on exit
        logits = model(video)
    original = interpolate(model, clip_state, 0.7)       # the same by hand ...
    restore(model, original)                             # ... and back

A ratio sweep outside Lightning: :func:`sweep` (what the :class:`~tc_clip.callbacks.WeightSpaceSweep`
callback runs), its files: :func:`write_sweep_csv` / :func:`write_sweep_json`, the trade-off plot:
:func:`tradeoff_points` + :func:`plot_tradeoff`; several runs' CSV files (e.g. one ``tc-clip test`` per
target dataset) are combined with ``python -m tc_clip.ensemble plot`` (see :func:`main`).

Everything here is plain deterministic arithmetic: under DDP every process computes bit-identical
ensembled weights from its own (identical) copies, no communication is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

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
    from tc_clip.model import create_clip, load_clip_state_dict

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


# ------------------------------------------------------------------------------------- evaluation
@dataclass
class SetResult:
    """Accuracy of one evaluation set at one ratio (fractions in [0, 1])."""

    alpha: float
    eval_set: str
    top1: float
    top5: float
    videos: int
    skipped: int
    group: str | None = None
    role: str | None = None
    stage: str = "test"


def _eval_set_fields(info: Any, position: int, default_name: str) -> dict[str, Any]:
    return {
        "name": str(getattr(info, "name", None) or (default_name if position == 0 else f"set{position}")),
        "class_names": list(info.class_names),
        "group": getattr(info, "group", None),
        "role": getattr(info, "role", None),
    }


def _scores_fn(module: nn.Module) -> Callable[[Tensor], Tensor]:
    fn = getattr(module, "eval_scores", None)
    if callable(fn):
        return fn
    from tc_clip.lightning.metrics import aggregate_views

    def scores(video: Tensor) -> Tensor:  # a bare TCCLIP: the module's recipe (softmax per view, summed)
        if video.dim() == 5:
            video = video.unsqueeze(1)
        b, v = video.shape[:2]
        return aggregate_views(module(video.flatten(0, 1)).view(b, v, -1))

    return scores


def find_tcclip(module: nn.Module) -> tuple[str, nn.Module]:
    """``(prefix, model)``: the :class:`~tc_clip.model.TCCLIP` inside ``module`` (``module.model`` for
    :class:`~tc_clip.lightning.TCCLIPModule`) and the prefix of its keys in ``module.state_dict()``."""
    from tc_clip.model import TCCLIP

    if isinstance(module, TCCLIP):
        return "", module
    inner = getattr(module, "model", None)
    if isinstance(inner, TCCLIP):
        return "model.", inner
    for name, sub in module.named_modules():
        if isinstance(sub, TCCLIP):
            return f"{name}.", sub
    raise TypeError(f"{type(module).__name__} holds no TCCLIP model to ensemble")


def evaluate(
    module: nn.Module,
    dataloaders: Sequence[Iterable],
    eval_sets: Sequence[Any],
    alpha: float = 1.0,
    stage: str = "test",
    batch_to_device: Callable[[Any, int], Any] | None = None,
    max_batches: Sequence[int | float] | None = None,
    context: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> list[SetResult]:
    """Evaluate ``module`` as it is on every dataloader, with the recipe of ``TCCLIPModule``'s test step:
    the set's vocabulary, ``module.eval_scores`` (softmax per view, summed) and the deduplicating
    :class:`~tc_clip.lightning.EvalSetAccuracy` (exact under DDP: ``compute()`` gathers every process).

    ``eval_sets``: one entry per dataloader with ``name``, ``class_names`` and optionally ``group`` /
    ``role`` (the data module's ``eval_sets(stage)``). ``alpha`` only labels the results. A bare
    ``TCCLIP`` works too. ``batch_to_device(batch, dataloader_idx)`` defaults to moving tensors to the
    module's device; ``max_batches`` limits each dataloader; ``context`` wraps every forward (autocast).
    """
    from tc_clip.lightning.metrics import EvalSetAccuracy

    if len(dataloaders) != len(eval_sets):
        raise ValueError(f"{len(dataloaders)} dataloaders but {len(eval_sets)} evaluation sets")
    _, model = find_tcclip(module)
    scores_fn = _scores_fn(module)
    device = next(module.parameters()).device
    if batch_to_device is None:
        def batch_to_device(batch, _idx):
            return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
    context = context or contextlib.nullcontext
    was_training = module.training
    module.eval()
    results = []
    try:
        for i, (loader, info) in enumerate(zip(dataloaders, eval_sets, strict=True)):
            fields = _eval_set_fields(info, i, {"validate": "val"}.get(stage, stage))
            if list(model.class_names) != fields["class_names"]:
                model.set_class_names(fields["class_names"])
            metric = EvalSetAccuracy(num_classes=len(fields["class_names"])).to(device)
            limit = max_batches[i] if max_batches is not None else math.inf
            for b, batch in enumerate(loader):
                if b >= limit:
                    break
                batch = batch_to_device(batch, i)
                with torch.inference_mode(), context():
                    scores = scores_fn(batch["video"])
                metric.update(scores, batch["label"], batch["index"], batch.get("skipped"))
            if not metric.update_called:
                continue
            out = metric.compute()
            results.append(SetResult(
                alpha=alpha, eval_set=fields["name"], top1=float(out["top1"]), top5=float(out["top5"]),
                videos=int(out["count"]), skipped=int(out["skipped"]), group=fields["group"],
                role=fields["role"], stage=stage,
            ))
    finally:
        module.train(was_training)
    return results


def sweep(
    module: nn.Module,
    dataloaders: Sequence[Iterable],
    eval_sets: Sequence[Any],
    clip_state: Mapping[str, Tensor],
    alphas: Sequence[float],
    on_result: Callable[[float, list[SetResult]], None] | None = None,
    **evaluate_kwargs: Any,
) -> list[SetResult]:
    """Evaluate ``module`` at every ratio of ``alphas`` (see :func:`evaluate`); the fine-tuned weights
    are restored afterwards, also on error. Ratios and CLIP shapes are checked before any evaluation.
    ``on_result(alpha, results)`` is called after every ratio (logging)."""
    alphas = check_alphas(alphas)
    _, model = find_tcclip(module)
    clip_state = check_clip_state(model, clip_state)
    rows: list[SetResult] = []
    for alpha in alphas:
        with ensembled(model, clip_state, alpha):
            results = evaluate(module, dataloaders, eval_sets, alpha=alpha, **evaluate_kwargs)
        rows.extend(results)
        if on_result is not None:
            on_result(alpha, results)
    return rows


# ------------------------------------------------------------------------------- summaries, files
ZeroShotSpec = Sequence[str] | Mapping[str, Sequence[str]] | None


@dataclass
class TradeoffPoint:
    """One ratio on the trade-off plot (fractions): x = mean zero-shot top-1, y = fine-tuning-set top-1."""

    alpha: float
    zero_shot_top1: float
    finetune_top1: float
    zero_shot: dict[str, float] = field(default_factory=dict)


def _rows_by_alpha(rows: Sequence[SetResult]) -> dict[float, list[SetResult]]:
    out: dict[float, list[SetResult]] = {}
    for r in rows:
        out.setdefault(float(r.alpha), []).append(r)
    return out


def _value_of(name: str, rows: Sequence[SetResult]) -> float | None:
    """top-1 of the set ``name``, else the mean over the sets of the group ``name``."""
    for r in rows:
        if r.eval_set == name:
            return r.top1
    group = [r.top1 for r in rows if r.group == name and r.role is None]
    return sum(group) / len(group) if group else None


def default_targets(
    rows: Sequence[SetResult], finetune_set: str | None = None
) -> tuple[str | None, list[str]]:
    """``(finetune_set, zero_shot_sets)`` when not given: the first set (or its group) is the
    fine-tuning set, every other group / ungrouped set a zero-shot target."""
    units: list[str] = []
    for r in rows:
        unit = r.group if r.group is not None and r.role is None else r.eval_set
        if unit not in units:
            units.append(unit)
    if finetune_set is None:
        finetune_set = units[0] if units else None
    return finetune_set, [u for u in units if u != finetune_set]


def _zero_shot_units(spec: ZeroShotSpec) -> dict[str, list[str]]:
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return {str(k): [str(x) for x in ([v] if isinstance(v, str) else v)] for k, v in spec.items()}
    return {str(s): [str(s)] for s in spec}


def known_names(eval_sets: Sequence[Any]) -> set[str]:
    """Names usable as ``finetune_set`` / ``zero_shot_sets`` entries: set names and group names."""
    names = set()
    for info in eval_sets:
        names.add(str(info.name))
        if getattr(info, "group", None) is not None:
            names.add(str(info.group))
    return names


def check_targets(finetune_set: str | None, zero_shot_sets: ZeroShotSpec, available: set[str]) -> None:
    """``ValueError`` naming every requested set or group that is not in ``available``."""
    wanted = ([finetune_set] if finetune_set else []) + [
        n for names in _zero_shot_units(zero_shot_sets).values() for n in names]
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ValueError(f"evaluation sets or groups {unknown} are not in this run; it has: "
                         f"{sorted(available)}")


def tradeoff_points(
    rows: Sequence[SetResult], finetune_set: str | None = None, zero_shot_sets: ZeroShotSpec = None
) -> list[TradeoffPoint]:
    """One point per ratio. ``finetune_set``: a set or group name (default: the first set).
    ``zero_shot_sets``: set or group names (a group counts once, as the mean of its splits), or a mapping
    ``{label: [set names]}``; default: every other group / ungrouped set. The zero-shot value is the
    mean over the entries. Ratios lacking a value are left out; no point at all if a side is empty."""
    points = []
    for alpha, at in sorted(_rows_by_alpha(rows).items()):
        ft_name, default_zs = default_targets(at, finetune_set)
        if zero_shot_sets is not None:
            units = _zero_shot_units(zero_shot_sets)
        else:
            units = {u: [u] for u in default_zs}
        y = _value_of(ft_name, at) if ft_name else None
        zs: dict[str, float] = {}
        for label, names in units.items():
            values = [_value_of(n, at) for n in names]
            if values and all(v is not None for v in values):
                zs[label] = sum(values) / len(values)
        if y is None or not zs or len(zs) != len(units):
            continue
        points.append(TradeoffPoint(alpha, sum(zs.values()) / len(zs), y, zs))
    return points


CSV_FIELDS = ("alpha", "stage", "eval_set", "group", "role", "top1", "top5", "videos", "skipped")


def write_sweep_csv(path: str | os.PathLike, rows: Sequence[SetResult]) -> None:
    """One line per (ratio, evaluation set): ``alpha, stage, eval_set, group, role, top1, top5, videos,
    skipped`` (accuracies as fractions)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for r in rows:
            writer.writerow([repr(r.alpha), r.stage, r.eval_set, r.group or "", r.role or "", repr(r.top1),
                             repr(r.top5), r.videos, r.skipped])


def read_sweep_csv(path: str | os.PathLike) -> list[SetResult]:
    """The rows written by :func:`write_sweep_csv`."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("alpha", "eval_set", "top1") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} is not a sweep CSV (no columns {missing})")
        for line in reader:
            rows.append(SetResult(
                alpha=float(line["alpha"]), eval_set=line["eval_set"], top1=float(line["top1"]),
                top5=float(line.get("top5") or "nan"), videos=int(float(line.get("videos") or 0)),
                skipped=int(float(line.get("skipped") or 0)), group=line.get("group") or None,
                role=line.get("role") or None, stage=line.get("stage") or "test",
            ))
    return rows


def read_points_csv(
    path: str | os.PathLike, finetune_set: str | None = None, zero_shot_sets: ZeroShotSpec = None
) -> list[TradeoffPoint]:
    """Trade-off points from a file: a sweep CSV (:func:`write_sweep_csv`; reduced with
    :func:`tradeoff_points`), or a CSV with columns ``zero_shot_top1, finetune_top1`` and optionally
    ``alpha`` (e.g. numbers copied from a paper). Values above 1 are read as percentages."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if "eval_set" in header:
        return tradeoff_points(read_sweep_csv(path), finetune_set, zero_shot_sets)
    if not {"zero_shot_top1", "finetune_top1"} <= set(header):
        raise ValueError(f"{path}: expected a sweep CSV or columns zero_shot_top1, finetune_top1 "
                         f"(and optionally alpha); got {header}")
    points = []
    with open(path, newline="") as f:
        for line in csv.DictReader(f):
            x, y = float(line["zero_shot_top1"]), float(line["finetune_top1"])
            x, y = (x / 100 if x > 1 else x), (y / 100 if y > 1 else y)
            alpha = float(line["alpha"]) if line.get("alpha") not in (None, "") else float("nan")
            points.append(TradeoffPoint(alpha, x, y))
    return points


def write_sweep_json(
    path: str | os.PathLike,
    rows: Sequence[SetResult],
    finetune_set: str | None = None,
    zero_shot_sets: ZeroShotSpec = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"alphas", "finetune_set", "zero_shot_sets", "results": [{"alpha", "sets": {name: {...}},
    "summary": {...}, "finetune_top1", "zero_shot_top1", "zero_shot": {...}}], **extra}``; summaries as
    :func:`tc_clip.lightning.summarize` names them (group means, base/novel/HM, ``top1``). Returns it."""
    from tc_clip.lightning.summary import EvalSetResult, summarize

    points = {p.alpha: p for p in tradeoff_points(rows, finetune_set, zero_shot_sets)}
    by_alpha = _rows_by_alpha(rows)
    ft, zs = default_targets(rows, finetune_set)
    doc: dict[str, Any] = {
        "alphas": list(by_alpha),
        "finetune_set": ft,
        "zero_shot_sets": zero_shot_sets if zero_shot_sets is not None else zs,
        "results": [],
    }
    for alpha, at in by_alpha.items():
        entry: dict[str, Any] = {
            "alpha": alpha,
            "sets": {r.eval_set: {"top1": r.top1, "top5": r.top5, "videos": r.videos, "skipped": r.skipped,
                                  "group": r.group, "role": r.role} for r in at},
        }
        if at and all(not math.isnan(r.top1) for r in at):
            evals = [EvalSetResult(r.eval_set, r.top1, r.top5, r.group, r.role) for r in at]
            entry["summary"] = summarize(evals)
        p = points.get(alpha)
        if p is not None:
            entry.update(finetune_top1=p.finetune_top1, zero_shot_top1=p.zero_shot_top1,
                         zero_shot=p.zero_shot)
        doc["results"].append(entry)
    doc.update(extra or {})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return doc


def plot_tradeoff(
    points: Sequence[TradeoffPoint],
    path: str | os.PathLike,
    label: str = "TC-CLIP",
    baselines: Mapping[str, Sequence[TradeoffPoint]] | None = None,
    finetune_label: str = "fine-tuning set",
    title: str | None = "Weight-space ensembling",
) -> str:
    """The trade-off plot (PNG, matplotlib's Agg backend): x = mean zero-shot top-1 (%), y = top-1 on the
    fine-tuning set (%), one point per ratio labelled with α, joined in α order; ``baselines`` (e.g.
    ``{"ViFi-CLIP": points}``) drawn on the same axes. Returns the path."""
    if not points:
        raise ValueError("plot_tradeoff(): no points (the run needs a fine-tuning set and a zero-shot set)")
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, leaves the session's backend alone

    fig = Figure(figsize=(6.0, 4.5), dpi=150)
    ax = fig.add_subplot(1, 1, 1)
    series = [(label, points, "o", "C0")]
    for i, (name, pts) in enumerate((baselines or {}).items()):
        series.append((name, pts, "s^Dv"[i % 4], f"C{i + 1}"))
    for name, pts, marker, colour in series:
        pts = sorted(pts, key=lambda p: (math.isnan(p.alpha), p.alpha))
        xs = [100 * p.zero_shot_top1 for p in pts]
        ys = [100 * p.finetune_top1 for p in pts]
        ax.plot(xs, ys, marker=marker, color=colour, label=name, linewidth=1.2, markersize=5)
        labels: dict[tuple[float, float], list[str]] = {}  # ratios landing on the same point share a label
        for p, x, y in zip(pts, xs, ys, strict=True):
            if not math.isnan(p.alpha):
                labels.setdefault((round(x, 6), round(y, 6)), []).append(f"{p.alpha:g}")
        for (x, y), text in labels.items():
            ax.annotate(", ".join(text), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=colour)
    ax.set_xlabel("mean zero-shot top-1 (%)")
    ax.set_ylabel(f"{finetune_label} top-1 (%)")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8, title="points labelled with α", title_fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return str(path)


# ------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tc_clip.ensemble plot``: combine sweep CSVs of several runs (e.g. one ``tc-clip
    test`` with :class:`~tc_clip.callbacks.WeightSpaceSweep` per dataset: K-400 val, HMDB-51, UCF-101,
    K-600) into one trade-off plot, plus the merged CSV and JSON next to it::

        python -m tc_clip.ensemble plot runs/*/version_*/wise_sweep/wise_sweep_test.csv \\
            --finetune-set k400_val --zero-shot-sets hmdb51 ucf101 k600 \\
            --baseline ViFi-CLIP=vifi_sweep.csv --output tradeoff.png
    """
    parser = argparse.ArgumentParser(
        prog="python -m tc_clip.ensemble", description=(main.__doc__ or "").split("::")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plot", help="trade-off plot from one or more sweep CSV files")
    p.add_argument("csv", nargs="+", help="sweep CSV files (their rows are merged)")
    p.add_argument("--finetune-set", default=None, help="set or group name of the fine-tuning set (y)")
    p.add_argument("--zero-shot-sets", nargs="*", default=None, help="set or group names averaged for x")
    p.add_argument("--baseline", action="append", default=[], metavar="LABEL=CSV",
                   help="a second run on the same axes (sweep CSV or zero_shot_top1,finetune_top1 CSV)")
    p.add_argument("--label", default="TC-CLIP")
    p.add_argument("--output", "-o", default="wise_tradeoff.png")
    args = parser.parse_args(argv)

    rows = [r for path in args.csv for r in read_sweep_csv(path)]
    seen = {(r.alpha, r.eval_set) for r in rows}
    if len(seen) != len(rows):
        parser.error("the CSV files hold the same (alpha, eval_set) twice")
    available = {r.eval_set for r in rows} | {r.group for r in rows if r.group}
    try:
        check_targets(args.finetune_set, args.zero_shot_sets, available)
    except ValueError as err:
        parser.error(str(err))
    points = tradeoff_points(rows, args.finetune_set, args.zero_shot_sets)
    baselines = {}
    for spec in args.baseline:
        name, _, path = spec.rpartition("=")
        baselines[name or Path(path).stem] = read_points_csv(path, args.finetune_set, args.zero_shot_sets)
    out = Path(args.output)
    write_sweep_csv(out.with_suffix(".csv"), rows)
    write_sweep_json(out.with_suffix(".json"), rows, args.finetune_set, args.zero_shot_sets)
    if not points:
        parser.error("no ratio has both a fine-tuning-set value and every zero-shot value")
    ft = args.finetune_set or default_targets(rows)[0]
    plot_tradeoff(points, out, label=args.label, baselines=baselines, finetune_label=str(ft))
    print(f"wrote {out}, {out.with_suffix('.csv')}, {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
