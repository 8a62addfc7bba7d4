"""``last.ckpt`` after every epoch and, optionally, every N optimiser steps, keeping the previous one as
``last-prev.ckpt`` (added by ``tc-clip fit``)."""

from __future__ import annotations

import os
import zipfile
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` (weights, optimiser, scheduler, loop and sampler state) at the end of every
    epoch and, with ``every_n_train_steps``, also every that many optimiser steps, so that a killed run
    loses at most that interval.

    Lightning's ``ModelCheckpoint(save_last=True)`` only refreshes ``last.ckpt`` when it also saved a
    top-k checkpoint in the same step, so after an epoch that did not improve the monitored metric
    ``last.ckpt`` would be stale; this callback saves unconditionally.

    Before each save the current ``last.ckpt`` becomes ``last-prev.ckpt`` (when it is whole: written by this
    process, or its CRCs check), so a ``last.ckpt`` damaged later still leaves the one before it for
    ``--ckpt_path last``. Each file is written atomically by the trainer's checkpoint IO
    (:class:`~tc_clip.lightning.checkpoint_io.AtomicCheckpointIO` under ``tc-clip``).
    """

    PREVIOUS_SUFFIX = "-prev"

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_epochs: int | None = 1,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
    ) -> None:
        self._steps_or_time = bool(every_n_train_steps) or train_time_interval is not None
        self._whole: set[str] = set()  # files this process wrote (whole: the write returned)
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            save_last=False,
            # Lightning allows one trigger; the epoch-end save of the step/time mode is on_train_epoch_end's
            every_n_epochs=0 if self._steps_or_time else every_n_epochs,
            every_n_train_steps=every_n_train_steps or None,
            train_time_interval=train_time_interval,
            enable_version_counter=False,
            # at the end of every training epoch (after that epoch's validation), also when
            # validation runs only every n epochs
            save_on_train_epoch_end=True,
        )

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if trainer.is_global_zero and os.path.isfile(filepath):
            root, ext = os.path.splitext(filepath)
            if filepath in self._whole or _crc_ok(filepath):
                os.replace(filepath, root + self.PREVIOUS_SUFFIX + ext)
        super()._save_checkpoint(trainer, filepath)
        self._whole.add(filepath)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # at the epoch's last batch the epoch-end save follows, after validation; a checkpoint from here
        # would make a resumed run skip that validation (Lightning counts the epoch as finished)
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._steps_or_time and not (
            trainer.fast_dev_run or trainer.sanity_checking or trainer.state.fn != "fit"
        ):
            # also when a step save happened at this global step: this one holds the finished epoch
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
            self._last_global_step_saved = trainer.global_step


def _crc_ok(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False
