"""The training sampler's position in every checkpoint, so a run resumed mid-epoch continues with the next
unseen sample (added by ``tc-clip fit``)."""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from tc_clip.data.sampler import ResumableSampler


def _train_sampler(trainer: L.Trainer) -> ResumableSampler | None:
    loader = trainer.fit_loop._combined_loader
    if loader is None:
        return None
    for dl in loader.flattened:
        for sampler in (getattr(dl, "sampler", None), getattr(getattr(dl, "batch_sampler", None), "sampler", None)):
            if isinstance(sampler, ResumableSampler):
                return sampler
    return None


class SamplerResume(Callback):
    """Puts the training sampler's position (epoch, samples consumed) into every checkpoint and, when a
    run resumes, continues the interrupted epoch at the next unseen sample.

    The position comes from the trainer's batch count, not from the loader, which Lightning and the
    workers read ahead of training. Lightning's own loader-state restore does not run when the module
    calls ``trainer.estimated_stepping_batches`` in ``configure_optimizers`` (the iterator exists before the
    checkpoint is read), so the iterator is rebuilt here after the position is restored.
    """

    state_key = "SamplerResume"

    def __init__(self) -> None:
        self._loaded = False
        self._pending: dict[str, int] | None = None

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        sampler = _train_sampler(trainer)
        if sampler is None or trainer.train_dataloader is None:
            return
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        batch_size = getattr(trainer.train_dataloader, "batch_size", None) or 1
        checkpoint["tc_clip_sampler"] = sampler.state_dict(consumed=batches * batch_size)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._loaded = True
        self._pending = checkpoint.get("tc_clip_sampler")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # runs after the checkpoint is restored and before the first batch; Lightning skips
        # on_train_epoch_start when it resumes inside an epoch
        state, self._pending = self._pending, None
        loaded, self._loaded = self._loaded, False
        sampler = _train_sampler(trainer)
        if not loaded or sampler is None:
            return
        sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)  # Lightning's value, set early
        if state:
            sampler.load_state_dict(state)
            if state.get("epoch") == sampler.epoch and state.get("consumed", 0) > 0:
                rank_zero_info(f"resuming epoch {sampler.epoch} after its first {state['consumed']} samples")
        # the position is restored: Lightning's "dataloader is not resumable" warning does not apply
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        fetcher = trainer.fit_loop._data_fetcher
        if fetcher is not None:
            iter(fetcher)  # drop the iterator built before the restore (and its read-ahead)
