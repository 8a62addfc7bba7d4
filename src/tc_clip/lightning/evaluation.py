"""Evaluating a model outside a Trainer's loops, with the recipe of :class:`~tc_clip.lightning.TCCLIPModule`'s
test step (each set's vocabulary, the video score, the deduplicating accuracy): :func:`evaluate` once,
:func:`sweep` at several WiSE-FT ratios (what :class:`~tc_clip.callbacks.WeightSpaceSweep` runs after
Lightning's own test loop, on the same dataloaders)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from tc_clip.data import EvalSetInfo
from tc_clip.data.gpu_augment import device_transform
from tc_clip.lightning.metrics import EvalSetAccuracy, video_scores
from tc_clip.model import wise
from tc_clip.results.records import EvalSetResult


def _scores_fn(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """The module's own ``eval_scores`` (a :class:`TCCLIPModule`), else the recipe on a bare ``TCCLIP``."""
    fn = getattr(module, "eval_scores", None)
    if callable(fn):
        return fn
    return lambda video: video_scores(module, video)


def evaluate(
    module: nn.Module,
    dataloaders: Sequence[Iterable],
    eval_sets: Sequence[EvalSetInfo],
    alpha: float = 1.0,
    stage: str = "test",
    batch_to_device: Callable[[Any, int], Any] | None = None,
    max_batches: Sequence[int | float] | None = None,
    context: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> list[EvalSetResult]:
    """Evaluate ``module`` as it is on every dataloader: the set's vocabulary, ``module.eval_scores``
    (softmax per view, summed) and the deduplicating :class:`~tc_clip.lightning.EvalSetAccuracy` (exact
    under DDP: ``compute()`` gathers every process).

    ``eval_sets``: one :class:`~tc_clip.data.EvalSetInfo` per dataloader (the data module's
    ``eval_sets(stage)``). ``alpha`` and ``stage`` only label the results. A bare ``TCCLIP`` works too.
    ``batch_to_device(batch, dataloader_idx)`` defaults to moving tensors to the module's device and
    normalising ``uint8`` clips (:func:`~tc_clip.data.gpu_augment.device_transform`); ``max_batches``
    limits each dataloader; ``context`` wraps every forward (autocast).
    """
    if len(dataloaders) != len(eval_sets):
        raise ValueError(f"{len(dataloaders)} dataloaders but {len(eval_sets)} evaluation sets")
    _, model = wise.find_tcclip(module)
    scores_fn = _scores_fn(module)
    device = next(module.parameters()).device
    if batch_to_device is None:

        def batch_to_device(batch, _idx):  # the data modules hand over uint8 clips: normalise them here
            return device_transform({k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()})

    context = context or contextlib.nullcontext
    was_training = module.training
    module.eval()
    results = []
    try:
        for i, (loader, info) in enumerate(zip(dataloaders, eval_sets, strict=True)):
            if list(model.class_names) != list(info.class_names):
                model.set_class_names(list(info.class_names))
            metric = EvalSetAccuracy(num_classes=len(info.class_names)).to(device)
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
            results.append(EvalSetResult(
                name=info.name, top1=float(out["top1"]), top5=float(out["top5"]), group=info.group, role=info.role,
                videos=int(out["count"]), skipped=int(out["skipped"]), alpha=alpha, stage=stage,
            ))
    finally:
        module.train(was_training)
    return results


def sweep(
    module: nn.Module,
    dataloaders: Sequence[Iterable],
    eval_sets: Sequence[EvalSetInfo],
    clip_state: Mapping[str, Tensor],
    alphas: Sequence[float],
    on_result: Callable[[float, list[EvalSetResult]], None] | None = None,
    **evaluate_kwargs: Any,
) -> list[EvalSetResult]:
    """Evaluate ``module`` at every ratio of ``alphas`` (see :func:`evaluate`); the fine-tuned weights
    are restored afterwards, also on error. Ratios and CLIP shapes are checked before any evaluation.
    ``on_result(alpha, results)`` is called after every ratio (logging)."""
    alphas = wise.check_alphas(alphas)
    _, model = wise.find_tcclip(module)
    clip_state = wise.check_clip_state(model, clip_state)
    rows: list[EvalSetResult] = []
    for alpha in alphas:
        with wise.ensembled(model, clip_state, alpha):
            results = evaluate(module, dataloaders, eval_sets, alpha=alpha, **evaluate_kwargs)
        rows.extend(results)
        if on_result is not None:
            on_result(alpha, results)
    return rows
