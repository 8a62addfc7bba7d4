"""Which checkpoint callback keeps a run's best epoch (read by :class:`NovelAtBestBase` and :class:`FitSummary`)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


def monitored_checkpoint(trainer: L.Trainer) -> ModelCheckpoint | None:
    """The checkpoint callback that keeps the best epoch (the first one with a monitored metric)."""
    return next((cb for cb in trainer.checkpoint_callbacks if getattr(cb, "monitor", None)), None)
