"""Mixup / CutMix for video clips, label smoothing and the soft-target cross-entropy (SPEC section 5).

A clip is mixed with a partner drawn by a random permutation of the per-device batch (SPEC 5b, as the
release); CutMix pastes one box, the same for every frame of the clip, and the mixing weight is corrected
to the box's true area.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def smooth_one_hot(labels: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    """One-hot targets with label smoothing: ``1 - ε + ε/C`` on the label, ``ε/C`` elsewhere."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    target = torch.full((labels.shape[0], num_classes), off, device=labels.device, dtype=torch.float32)
    return target.scatter_(1, labels.long().view(-1, 1), on)


def soft_target_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of ``Σ_c −target_c · log_softmax(logits)_c`` (computed in float32)."""
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def _sample_beta(alpha: float) -> float:
    # Beta(a, a) from the global torch RNG (seeded by ``seed_everything``)
    return float(torch.distributions.Beta(float(alpha), float(alpha)).sample())


def cutmix_box(height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """A box covering about ``1 - lam`` of the frame, centre uniform over the frame, clipped to it.

    Returns ``(y0, y1, x0, x1)``.
    """
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(0, height, (1,)))
    cx = int(torch.randint(0, width, (1,)))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y0, y1, x0, x1


class VideoMixup:
    """Mixup (α) or CutMix (α) with switch probability, label smoothing, for ``[B, T, C, H, W]`` clips.

    ``mixup_alpha = cutmix_alpha = 0`` turns mixing off (only label smoothing remains). When both are
    positive, CutMix is used with probability ``switch_prob`` and Mixup otherwise.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
    ) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError("mixup_alpha and cutmix_alpha must be >= 0")
        if not 0.0 <= switch_prob <= 1.0:
            raise ValueError("switch_prob must be in [0, 1]")
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, video: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(mixed video, soft targets [B, num_classes])``; the input is not modified."""
        video, target, _ = self.mix(video, labels)
        return video, target

    def mix(self, video: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """As :meth:`__call__`, also returning the partner permutation (``None`` when mixing is off)."""
        target = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        if not self.enabled:
            return video, target, None
        partner = torch.randperm(video.shape[0]).to(video.device)
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or float(torch.rand(())) < self.switch_prob
        )
        if use_cutmix:
            lam = _sample_beta(self.cutmix_alpha)
            h, w = video.shape[-2:]
            y0, y1, x0, x1 = cutmix_box(h, w, lam)
            video = video.clone()
            video[..., y0:y1, x0:x1] = video[partner][..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        else:
            lam = _sample_beta(self.mixup_alpha)
            video = video * lam + video[partner] * (1.0 - lam)
        target = target * lam + target[partner] * (1.0 - lam)
        return video, target, partner
