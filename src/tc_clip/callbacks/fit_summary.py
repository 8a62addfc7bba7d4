"""A short summary printed at the end of ``fit`` (added by ``tc-clip fit``): best monitored score and its
epoch, base/novel/HM, unreadable and decoded training clips, checkpoints and the log folder."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from tc_clip.callbacks.monitored import monitored_checkpoint


class FitSummary(Callback):
    """Prints the best monitored score and its epoch, the checkpoint files and the log folder after fit.

    The best score and its epoch are part of every checkpoint (``state_dict``), so after a resume they
    describe the whole run, as ``best.ckpt`` does; the clip counts come from the module, which keeps them
    in its checkpoints too.
    """

    def __init__(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_epoch = state_dict.get("best"), state_dict.get("best_epoch")

    def _monitor(self, trainer: L.Trainer) -> tuple[str | None, str]:
        cb = monitored_checkpoint(trainer)
        return (cb.monitor, cb.mode) if cb is not None else (None, "max")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        monitor, mode = self._monitor(trainer)
        if monitor is None or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(monitor)
        if value is None or math.isnan(float(value)):
            return
        value = float(value)
        if self.best is None or (value > self.best if mode == "max" else value < self.best):
            self.best, self.best_epoch = value, trainer.current_epoch

    def summary(
        self,
        trainer: L.Trainer,
        log_dir: str | None = None,
        replaced: int | None = None,
        decoded: dict[str, int] | None = None,
    ) -> str:
        monitor, _ = self._monitor(trainer)
        lines = ["fit summary"]
        if replaced:
            lines.append(f"  unreadable training videos replaced by others: {replaced} (named in the warnings)")
        if decoded:
            lines.append("  training clips decoded by: " + ", ".join(f"{k} {v}" for k, v in decoded.items()))
        if monitor and self.best is not None:
            lines.append(f"  best {monitor} = {self.best:.4f} at epoch {self.best_epoch}")
        elif monitor:
            lines.append(f"  {monitor} was never logged: no validation ran")
        metrics = trainer.callback_metrics
        for key in sorted(metrics):
            if key.endswith(("/novel", "/hm", "/base")) and key.startswith("val/"):
                lines.append(f"  {key} = {float(metrics[key]):.4f}")
        for cb in trainer.checkpoint_callbacks:
            path = getattr(cb, "best_model_path", "") or getattr(cb, "last_model_path", "")
            if path:
                what = f"best by {cb.monitor}" if getattr(cb, "monitor", None) else "latest"
                lines.append(f"  checkpoint ({what}): {path}")
        lines.append(f"  logs: {log_dir if log_dir is not None else trainer.log_dir}")
        return "\n".join(lines)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # a broadcast: every process asks
        count = getattr(pl_module, "train_videos_replaced", None)
        replaced = count() if callable(count) else None  # a reduction: every process asks
        count = getattr(pl_module, "train_clips_decoded", None)
        decoded = count() if callable(count) else None  # a reduction too
        if trainer.is_global_zero:
            print(self.summary(trainer, log_dir, replaced, decoded))
