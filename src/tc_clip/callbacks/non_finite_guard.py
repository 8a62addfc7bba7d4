"""Stop a run whose loss or weights stop being finite, before anything non-finite is saved."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from tc_clip.errors import UserError


class NonFiniteError(UserError, RuntimeError):
    """The training loss or the weights contain NaN or inf."""


def _where(trainer: L.Trainer) -> str:
    batch = trainer.fit_loop.epoch_loop.batch_progress.current.ready - 1
    return f"global step {trainer.global_step} (epoch {trainer.current_epoch}, batch {max(batch, 0)})"


def non_finite_tensors(tensors: dict[str, Tensor], limit: int = 5) -> list[str]:
    """Names of (at most ``limit``) floating-point tensors holding NaN or inf.

    One fused L2-norm reduction per device and dtype (``torch._foreach_norm``, a multi-tensor kernel on
    GPUs) and one device sync: a tensor holding NaN or inf has a non-finite norm, so all-finite norms
    settle it. Only a tensor whose norm is not finite (or overflowed) is checked element by element."""
    named = [(k, t) for k, t in tensors.items() if isinstance(t, Tensor) and t.is_floating_point() and t.numel()]
    if not named:
        return []
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, (_, t) in enumerate(named):
        groups.setdefault((t.device, t.dtype), []).append(i)
    order, norms = [], []
    device = named[0][1].device
    for positions in groups.values():
        group = torch._foreach_norm([named[i][1].detach() for i in positions])
        norms.append(torch.stack(group).float().to(device))
        order += positions
    finite = torch.isfinite(torch.cat(norms))
    if bool(finite.all()):  # the one sync when all is well
        return []
    suspects = sorted(order[j] for j in (~finite).nonzero().flatten().tolist())
    return [named[i][0] for i in suspects if not bool(torch.isfinite(named[i][1]).all())][:limit]


class NonFiniteGuard(Callback):
    """Raises :class:`NonFiniteError` naming the global step when the loss is NaN/inf (checked before
    the backward pass, so the optimiser never applies it) or when a checkpoint is about to store
    non-finite weights (so neither ``best`` nor ``last`` can hold them).

    ``check_weights_every_n_steps`` also checks the trainable weights after optimiser steps (0: only at
    checkpoint saves); a finite loss can still come with an overflowing update.
    Lightning's ``detect_anomaly`` finds the same faults at many times the cost.
    """

    def __init__(self, check_weights_every_n_steps: int = 1) -> None:
        if check_weights_every_n_steps < 0:
            raise ValueError("check_weights_every_n_steps must be >= 0")
        self.check_weights_every_n_steps = check_weights_every_n_steps
        self._checked_step = -1

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteError(
                f"the training loss is {value} at {_where(trainer)}; stopped before the optimiser step, "
                "so no non-finite weights were applied or saved. Lower --model.lr, check the data, or "
                "resume from the last finite checkpoint (--ckpt_path last)."
            )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n, step = self.check_weights_every_n_steps, trainer.global_step
        if n and step % n == 0 and step != self._checked_step:  # once per optimiser step
            self._checked_step = step
            params = {k: p.detach() for k, p in pl_module.named_parameters() if p.requires_grad}
            bad = non_finite_tensors(params)
            if bad:
                raise NonFiniteError(
                    f"non-finite weights after the optimiser update at {_where(trainer)}: {', '.join(bad)}; "
                    "stopped before they are saved. Lower --model.lr or resume from --ckpt_path last."
                )

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        bad = non_finite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            raise NonFiniteError(
                f"refusing to save a checkpoint with non-finite weights at {_where(trainer)}: {', '.join(bad)}"
            )
