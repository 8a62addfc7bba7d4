"""The video score (softmax per view, summed over the views: :func:`video_scores`, the one recipe that
training evaluation, the WiSE-FT sweep and inference share) and a top-k accuracy metric that stays exact
under DDP.

Lightning's distributed evaluation sampler pads every process to the same number of videos by
repeating a few of them, which biases a plain running accuracy. :class:`EvalSetAccuracy` keeps one hit
flag per video together with the video's dataset index (``batch["index"]``), gathers them from all
processes (torchmetrics ``cat`` reduction) and counts every index once, so the number equals a
single-process evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def aggregate_views(logits: Tensor) -> Tensor:
    """``[B, V, C]`` logits → ``[B, C]`` scores: softmax per view, summed over the V views (SPEC §5)."""
    if logits.dim() != 3:
        raise ValueError(f"expected [B, V, C] logits, got shape {tuple(logits.shape)}")
    return logits.float().softmax(dim=-1).sum(dim=1)


def video_scores(forward: Callable[[Tensor], Tensor], video: Tensor, views_per_forward: int | None = None) -> Tensor:
    """``[B, V, T, 3, H, W]`` (or one view, ``[B, T, 3, H, W]``) → ``[B, C]`` scores of ``forward`` (a model
    mapping clips to logits): softmax per view, summed over the views (:func:`aggregate_views`; divide by V
    for the mean probability). ``views_per_forward`` bounds the clips of one forward pass (memory)."""
    if video.dim() == 5:
        video = video.unsqueeze(1)
    b, v = video.shape[:2]
    flat = video.flatten(0, 1)
    chunk = views_per_forward
    if chunk is None or chunk >= b * v:
        logits = forward(flat)
    else:
        logits = torch.cat([forward(flat[i : i + chunk]) for i in range(0, b * v, chunk)])
    return aggregate_views(logits.view(b, v, -1))


def first_occurrence(index: Tensor) -> Tensor:
    """Positions of the first occurrence of every distinct value of ``index`` (in sorted value order)."""
    uniq, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(index.numel(), device=index.device)
    first = torch.full((uniq.numel(),), index.numel(), device=index.device, dtype=positions.dtype)
    return first.scatter_reduce(0, inverse, positions, reduce="amin")


class EvalSetAccuracy(Metric):
    """Top-k accuracies (k = 1 and 5 by default) of one evaluation set, deduplicated by video index.

    ``update(scores [B, C], label [B], index [B], skipped [B] | None)``; videos with ``label < 0`` are
    counted in ``count`` but not in the accuracies: unknown labels (predict) and unreadable evaluation
    videos, which the data module hands over as a zero clip with label -1 and ``skipped`` 1.
    ``compute()`` returns a dict with ``top{k}`` (fractions of the labelled videos), ``count``
    (distinct videos), ``labelled`` (those in the accuracies) and ``skipped`` (distinct videos flagged
    ``skipped``, each counted once however often DDP padding repeats it).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, top_k: tuple[int, ...] = (1, 5), **kwargs) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        self.num_classes = num_classes
        self.top_k = tuple(top_k)
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("hits", default=[], dist_reduce_fx="cat")
        self.add_state("labelled", default=[], dist_reduce_fx="cat")
        self.add_state("skipped", default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor, label: Tensor, index: Tensor, skipped: Tensor | None = None) -> None:
        if scores.shape[-1] != self.num_classes:
            raise ValueError(f"scores have {scores.shape[-1]} classes, the metric {self.num_classes}")
        label = label.to(scores.device).long()
        kmax = min(max(self.top_k), self.num_classes)
        top = scores.topk(kmax, dim=-1).indices  # [B, kmax]
        match = top == label.view(-1, 1)
        hits = torch.stack([match[:, : min(k, kmax)].any(dim=1) for k in self.top_k], dim=1)
        self.index.append(index.to(scores.device).long().view(-1))
        # integer states: gloo cannot all-gather bool tensors
        self.hits.append(hits.long())
        self.labelled.append((label >= 0).long())
        if skipped is None:
            skipped = torch.zeros_like(label)
        self.skipped.append((skipped.to(scores.device).view(-1) != 0).long())

    def compute(self) -> dict[str, Tensor]:
        nan = torch.tensor(float("nan"), device=self.device)
        # list states before synchronisation, one concatenated tensor after it (DDP)
        if isinstance(self.index, list) and len(self.index) == 0:
            out = {f"top{k}": nan for k in self.top_k}
            zero = torch.tensor(0, device=self.device)
            return {**out, "count": zero, "labelled": zero, "skipped": zero}
        index = dim_zero_cat(self.index)
        keep = first_occurrence(index)
        hits = dim_zero_cat(self.hits)[keep].bool()
        labelled = dim_zero_cat(self.labelled)[keep].bool()
        skipped = dim_zero_cat(self.skipped)[keep]
        n_lab = labelled.sum()
        out = {}
        for j, k in enumerate(self.top_k):
            out[f"top{k}"] = hits[labelled, j].float().mean() if n_lab > 0 else nan
        out["count"] = torch.tensor(keep.numel(), device=self.device)
        out["labelled"] = n_lab
        out["skipped"] = skipped.sum()
        return out
