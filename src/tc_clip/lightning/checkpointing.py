"""Checkpoint callbacks used by the ``tc-clip`` CLI."""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` (weights, optimiser, scheduler, loop state) at the end of every epoch.

    Lightning's ``ModelCheckpoint(save_last=True)`` only refreshes ``last.ckpt`` when it also saved a
    top-k checkpoint in the same step, so after an epoch that did not improve the monitored metric
    ``last.ckpt`` would be stale; this callback saves unconditionally. ``every_n_train_steps`` adds
    saves inside long epochs.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_epochs: int | None = 1,
        every_n_train_steps: int | None = None,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            save_last=False,
            every_n_epochs=every_n_epochs,
            every_n_train_steps=every_n_train_steps,
            enable_version_counter=False,
            # at the end of every training epoch (after that epoch's validation), also when
            # validation runs only every n epochs
            save_on_train_epoch_end=True,
        )
