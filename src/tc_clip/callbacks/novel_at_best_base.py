"""Base-to-novel (SPEC 5b): the novel sets are evaluated once, after fit, with the weights of the best-base
epoch (added by ``tc-clip fit``)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from tc_clip.callbacks.monitored import monitored_checkpoint


class NovelAtBestBase(Callback):
    """Base-to-novel: after fit, the best checkpoint is validated on every validation set, base and novel.

    While fitting, the data module leaves its ``role == "novel"`` sets out of validation
    (:class:`~tc_clip.data.VideoDataModule`'s ``defer_novel``), so the base set alone drives the checkpoint,
    as in the release. At the end of fit this callback runs ``trainer.validate`` with the best checkpoint:
    the module finds its evaluation sets again, now with the novel ones, and logs
    ``val/{group}/novel/top1`` and ``val/{group}/hm`` and appends a results record. Runs without deferred
    novel sets are left alone.
    """

    def __init__(self) -> None:
        self.deferred: list[str] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if stage != "fit" or dm is None:
            return
        deferred = getattr(dm, "deferred_sets", None)
        self.deferred = [info.name for info in deferred()] if callable(deferred) else []
        if self.deferred:
            rank_zero_info(f"base-to-novel: {', '.join(self.deferred)} evaluated at the best-base epoch, after fit")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.deferred or trainer.interrupted:
            return
        ckpt = monitored_checkpoint(trainer)
        best = ckpt.best_model_path if ckpt is not None else ""
        if not best:
            rank_zero_warn(
                f"base-to-novel: no best checkpoint (checkpointing off or no validation): {', '.join(self.deferred)} "
                "evaluated with the final weights"
            )
        trainer.validate(pl_module, datamodule=trainer.datamodule, ckpt_path=best or None, verbose=False)
