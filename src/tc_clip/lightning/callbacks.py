"""Callbacks that make a fit run report what the paper reports, added by ``tc-clip fit`` (usable alone).

* :class:`ValidateAtFitEnd`: the last epoch always validates, so a run shorter than
  ``check_val_every_n_epoch`` still gets a score and a best checkpoint;
* :class:`NovelAtBestBase`: base-to-novel (SPEC 5b) validates only the base set while training, then
  evaluates every validation set (base and novel) with the weights of the best-base epoch;
* :class:`FitSummary`: a short summary at the end of fit: best score and epoch, checkpoints, log folder.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn


def monitored_checkpoint(trainer: L.Trainer) -> ModelCheckpoint | None:
    """The checkpoint callback that keeps the best epoch (the first one with a monitored metric)."""
    return next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None)), None)


class ValidateAtFitEnd(Callback):
    """Validates after the last epoch even when ``check_val_every_n_epoch`` would skip it."""

    def __init__(self) -> None:
        self._saved: int | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        every = trainer.check_val_every_n_epoch
        last = trainer.max_epochs is not None and trainer.current_epoch == trainer.max_epochs - 1
        if last and every is not None and every > 1 and trainer.max_epochs % every != 0:
            self._saved = every
            trainer.check_val_every_n_epoch = 1

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._saved is not None:
            trainer.check_val_every_n_epoch, self._saved = self._saved, None


class NovelAtBestBase(Callback):
    """Base-to-novel: the novel set is evaluated once, with the weights of the best-base epoch.

    During ``fit`` the data module's validation sets with ``role == "novel"`` are left out (the base set
    alone drives the checkpoint, as in the release); at the end of fit the best checkpoint is validated on
    every set, which logs ``val/{group}/novel/top1`` and ``val/{group}/hm`` and appends a results record.
    Data modules without novel sets are left alone.
    """

    def __init__(self) -> None:
        self.deferred: list[str] = []
        self._patched: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if stage != "fit" or dm is None or not hasattr(dm, "eval_sets"):
            return
        infos = dm.eval_sets("validate")
        keep = [i for i, info in enumerate(infos) if getattr(info, "role", None) != "novel"]
        self.deferred = [info.name for info in infos if getattr(info, "role", None) == "novel"]
        if not self.deferred:
            return
        val_dataloader, eval_sets = dm.val_dataloader, dm.eval_sets

        def base_loaders():
            loaders = val_dataloader()
            return [loaders[i] for i in keep]

        def base_sets(stage: str):
            sets = eval_sets(stage)
            return [sets[i] for i in keep] if stage == "validate" else sets

        dm.val_dataloader, dm.eval_sets = base_loaders, base_sets
        self._patched = dm
        rank_zero_info(f"base-to-novel: {', '.join(self.deferred)} evaluated at the best-base epoch, after fit")

    def _restore(self) -> None:
        if self._patched is not None:
            for name in ("val_dataloader", "eval_sets"):
                self._patched.__dict__.pop(name, None)
            self._patched = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()
        if not self.deferred or trainer.interrupted:
            return
        ckpt = monitored_checkpoint(trainer)
        best = ckpt.best_model_path if ckpt is not None else ""
        if not best:
            rank_zero_warn(
                f"base-to-novel: no best checkpoint (checkpointing off or no validation): {', '.join(self.deferred)} "
                "evaluated with the final weights"
            )
        pl_module._eval_sets.pop("validate", None)  # discovered again, now with every set
        trainer.validate(pl_module, datamodule=trainer.datamodule, ckpt_path=best or None, verbose=False)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._restore()


class FitSummary(Callback):
    """Prints the best monitored score and its epoch, the checkpoint files and the log folder after fit."""

    def __init__(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None

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
