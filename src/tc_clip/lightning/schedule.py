"""Per-step learning-rate schedule of the release: linear warm-up from 0, then cosine decay to ``lr_min``.

For a parameter group with peak learning rate ``base`` at optimiser step ``s`` (0-based: the first
optimiser step uses ``s = 0``):

* ``s < W``: ``base · s / W`` (warm-up from 0);
* ``W ≤ s``: ``lr_min + (base − lr_min) · ½ (1 + cos(π · (s − W) / (S − W)))``, held at ``lr_min`` after
  ``S`` steps.

``lr_min`` is absolute and the same for every group (the prompt group, at 10× the base lr, decays to
the same floor). The schedule is expressed as a multiplicative factor per group for
:class:`torch.optim.lr_scheduler.LambdaLR`; the factor objects are picklable, so the scheduler's state
dict (saved in Lightning checkpoints) restores them.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_lr(step: int, base_lr: float, lr_min: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate at optimiser step ``step`` (see the module docstring)."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return lr_min + (base_lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineFactor:
    """``step -> lr(step) / base_lr`` for one parameter group (a picklable callable for LambdaLR)."""

    def __init__(self, base_lr: float, lr_min: float, warmup_steps: int, total_steps: int) -> None:
        self.base_lr = float(base_lr)
        self.lr_min = float(lr_min)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step: int) -> float:
        if self.base_lr == 0:
            return 0.0
        lr = warmup_cosine_lr(step, self.base_lr, self.lr_min, self.warmup_steps, self.total_steps)
        return lr / self.base_lr

    def __repr__(self) -> str:
        return (
            f"WarmupCosineFactor(base_lr={self.base_lr}, lr_min={self.lr_min}, "
            f"warmup_steps={self.warmup_steps}, total_steps={self.total_steps})"
        )


def warmup_cosine_scheduler(
    optimizer: Optimizer, lr_min: float, warmup_steps: int, total_steps: int
) -> LambdaLR:
    """A LambdaLR implementing the schedule for every group of ``optimizer`` (each from its own peak lr).

    Call ``scheduler.step()`` after every optimiser step (Lightning: ``interval="step"``).
    """
    factors = [
        WarmupCosineFactor(group.get("initial_lr", group["lr"]), lr_min, warmup_steps, total_steps)
        for group in optimizer.param_groups
    ]
    return LambdaLR(optimizer, lr_lambda=factors)
