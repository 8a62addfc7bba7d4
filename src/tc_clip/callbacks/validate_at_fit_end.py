"""The last epoch of a fit always validates, so a run shorter than ``check_val_every_n_epoch`` still gets a
score and a best checkpoint (added by ``tc-clip fit``)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback


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
