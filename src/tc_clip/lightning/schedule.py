"""Per-step learning-rate schedules: the release's single cosine (default) and a warm-up-then-cosine shape.

For a parameter group with peak rate ``base``, ``S`` optimiser steps in all and ``W`` warm-up steps, step
``t`` (0-based: the first optimiser step uses ``t = 0``) gets

* ``t < W``: ``base · t / W`` (linear warm-up from 0, both shapes);
* ``"release"`` (SPEC 5b): ``lr_min + ½ (base − lr_min)(1 + cos(π · t / S))``: one cosine over the whole run,
  warm-up included, so the rate drops at the end of the warm-up (zero-shot, ``W = S/2``: to about base/2);
* ``"warmup_then_cosine"``: ``lr_min + ½ (base − lr_min)(1 + cos(π · (t − W) / (S − W)))``: a cosine that
  starts at the peak after the warm-up (not the paper's recipe; kept as a named option).

Both are held at ``lr_min`` after ``S`` steps. ``lr_min`` is absolute and the same for every group (the prompt
group, at 10× the base rate, decays to the same floor). The schedule is a multiplicative factor per group for
:class:`torch.optim.lr_scheduler.LambdaLR`; the factor objects are picklable, so the scheduler's state dict
(saved in Lightning checkpoints) restores them.
"""

from __future__ import annotations

import math
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

ScheduleShape = Literal["release", "warmup_then_cosine"]
SCHEDULE_SHAPES: tuple[str, ...] = ("release", "warmup_then_cosine")


def _cosine(progress: float, base_lr: float, lr_min: float) -> float:
    progress = min(max(progress, 0.0), 1.0)
    return lr_min + (base_lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


def release_cosine_lr(step: int, base_lr: float, lr_min: float, warmup_steps: int, total_steps: int) -> float:
    """The release's rate at optimiser step ``step``: warm-up, then one cosine over all ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * step / warmup_steps
    return _cosine(step / max(total_steps, 1), base_lr, lr_min)


def warmup_cosine_lr(step: int, base_lr: float, lr_min: float, warmup_steps: int, total_steps: int) -> float:
    """The ``"warmup_then_cosine"`` rate: warm-up, then a cosine from the peak over the remaining steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * step / warmup_steps
    return _cosine((step - warmup_steps) / max(total_steps - warmup_steps, 1), base_lr, lr_min)


_SHAPES = {"release": release_cosine_lr, "warmup_then_cosine": warmup_cosine_lr}


def scheduled_lr(
    shape: ScheduleShape, step: int, base_lr: float, lr_min: float, warmup_steps: int, total_steps: int
) -> float:
    """The rate of ``shape`` at optimiser step ``step``."""
    if shape not in _SHAPES:
        raise ValueError(f"unknown lr_schedule {shape!r}; expected one of {', '.join(SCHEDULE_SHAPES)}")
    return _SHAPES[shape](step, base_lr, lr_min, warmup_steps, total_steps)


class WarmupCosineFactor:
    """``step -> lr(step) / base_lr`` for one parameter group (a picklable callable for LambdaLR)."""

    def __init__(
        self, base_lr: float, lr_min: float, warmup_steps: int, total_steps: int, shape: ScheduleShape = "release"
    ) -> None:
        if shape not in _SHAPES:
            raise ValueError(f"unknown lr_schedule {shape!r}; expected one of {', '.join(SCHEDULE_SHAPES)}")
        self.base_lr = float(base_lr)
        self.lr_min = float(lr_min)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.shape = shape

    def __call__(self, step: int) -> float:
        if self.base_lr == 0:
            return 0.0
        lr = scheduled_lr(self.shape, step, self.base_lr, self.lr_min, self.warmup_steps, self.total_steps)
        return lr / self.base_lr

    def __repr__(self) -> str:
        return (
            f"WarmupCosineFactor(base_lr={self.base_lr}, lr_min={self.lr_min}, warmup_steps={self.warmup_steps}, "
            f"total_steps={self.total_steps}, shape={self.shape!r})"
        )


def warmup_cosine_scheduler(
    optimizer: Optimizer, lr_min: float, warmup_steps: int, total_steps: int, shape: ScheduleShape = "release"
) -> LambdaLR:
    """A LambdaLR applying ``shape`` to every group of ``optimizer`` (each from its own peak rate).

    Call ``scheduler.step()`` after every optimiser step (Lightning: ``interval="step"``).
    """
    factors = [
        WarmupCosineFactor(group.get("initial_lr", group["lr"]), lr_min, warmup_steps, total_steps, shape)
        for group in optimizer.param_groups
    ]
    return LambdaLR(optimizer, lr_lambda=factors)
