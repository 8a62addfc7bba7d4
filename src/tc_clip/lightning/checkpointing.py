"""Lightning checkpoints of the ``tc-clip`` CLI: writing ``last.ckpt`` often, finding the right one to
resume from, refusing files that are unsafe or unreadable, and restoring the training sampler's position."""

from __future__ import annotations

import csv
import os
import re
import warnings
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import fsspec
import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from tc_clip.data.sampler import ResumableSampler
from tc_clip.model.serialization import CheckpointError as ModelCheckpointError

__all__ = [
    "CheckpointError",
    "ContinuingCSVLogger",
    "LastCheckpoint",
    "SamplerResume",
    "check_ckpt_path",
    "find_last_checkpoint",
    "resolve_ckpt_path",
    "resume_point",
    "validate_checkpoint",
]


class CheckpointError(ModelCheckpointError):
    """A checkpoint path that cannot be used (remote, unreadable, truncated or unsafe); the message names the
    file. A kind of :class:`tc_clip.model.CheckpointError`, so one ``except`` catches every refused file."""

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)
        self.path, self.reason = None, message


class LastCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` (weights, optimiser, scheduler, loop and sampler state) at the end of every
    epoch and, with ``every_n_train_steps``, also every that many optimiser steps, so that a killed run
    loses at most that interval.

    Lightning's ``ModelCheckpoint(save_last=True)`` only refreshes ``last.ckpt`` when it also saved a
    top-k checkpoint in the same step, so after an epoch that did not improve the monitored metric
    ``last.ckpt`` would be stale; this callback saves unconditionally.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_epochs: int | None = 1,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
    ) -> None:
        self._steps_or_time = bool(every_n_train_steps) or train_time_interval is not None
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


# --------------------------------------------------------------------------------- path checks


def _protocol(path: str) -> str:
    return fsspec.utils.get_protocol(path)


def check_ckpt_path(path: str | None, weights_only: bool | None = None) -> None:
    """Refuse checkpoint sources that Lightning would read with ``weights_only=False`` (which runs any code
    pickled into the file): ``http(s)://`` URLs and an explicit ``weights_only=False``."""
    if weights_only is False:
        raise CheckpointError(
            "--weights_only false is refused: loading a checkpoint that way runs code stored in the file; "
            "tc-clip checkpoints load with weights_only=True"
        )
    if path and _protocol(str(path)) in ("http", "https"):
        raise CheckpointError(
            f"--ckpt_path {path}: remote http(s) checkpoints are refused, because Lightning reads them with "
            "weights_only=False (code in the file would run); download the file and pass its local path"
        )


def validate_checkpoint(path: str | os.PathLike) -> None:
    """Check that ``path`` is a complete, safely loadable Lightning checkpoint, without reading its tensor
    data (``mmap``); raises :class:`CheckpointError` naming the file and the cause."""
    path = str(path)
    if _protocol(path) != "file":
        return  # fsspec remote (s3://, gs://, ...): Lightning loads these with weights_only=True
    path = path.removeprefix("file://")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with zipfile.ZipFile(path) as zf:
            zf.namelist()  # the central directory is at the end: a truncated file fails here
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is truncated or not a torch checkpoint: {err}") from err
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - every failure is reported with the file's name
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely (weights_only=True): {first}") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a Lightning checkpoint (no 'state_dict')")


def find_last_checkpoint(root: str | os.PathLike, dirpath: str | os.PathLike | None = None) -> str | None:
    """The newest readable ``last*.ckpt`` of this run: in ``dirpath`` when the checkpoint folder is set,
    else in ``root/version_*/checkpoints`` and ``root/checkpoints`` (the folders this CLI and Lightning
    write), never in other experiments' folders below ``root``. Unreadable files are skipped with a
    warning naming them; the chosen file is reported."""
    folders = [Path(dirpath)] if dirpath else [*Path(root).glob("version_*/checkpoints"), Path(root) / "checkpoints"]
    candidates = [p for d in folders if d.is_dir() for p in d.glob("last*.ckpt") if p.is_file()]
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            validate_checkpoint(path)
        except CheckpointError as err:
            rank_zero_warn(f"--ckpt_path last: skipping {err}")
            continue
        rank_zero_info(f"--ckpt_path last: resuming from {path}")
        return str(path)
    return None


def resume_point(ckpt_path: str | None, root: str | os.PathLike) -> tuple[int, int] | None:
    """``(N, global step)`` when ``ckpt_path`` lies in ``root/version_N`` (so a resumed run logs into its
    own folder, from that step on), else ``None``."""
    if not ckpt_path or _protocol(str(ckpt_path)) != "file" or not os.path.isfile(ckpt_path):
        return None
    try:
        rel = Path(ckpt_path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return None
    m = re.fullmatch(r"version_(\d+)", rel.parts[0]) if len(rel.parts) > 1 else None
    if not m:
        return None
    step = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True).get("global_step", 0)
    return int(m.group(1)), int(step)


class _ContinuingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, resume_step: int | None) -> None:
        self._resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        # Lightning deletes an existing metrics.csv here; keep the rows logged before the checkpoint
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            reader = csv.DictReader(f)
            rows, keys = list(reader), list(reader.fieldnames or [])
        if self._resume_step is not None:
            rows = [r for r in rows if not r.get("step") or float(r["step"]) < self._resume_step]
        with self._fs.open(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = keys


class ContinuingCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume into the same version folder (Lightning's
    deletes it): the rows of steps before ``resume_step`` (the checkpoint's global step) are kept, later
    ones dropped, since the resumed run logs them again. Rows are written at every logging step, so a
    killed run keeps them."""

    def __init__(self, *args: Any, resume_step: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("flush_logs_every_n_steps", 1)
        super().__init__(*args, **kwargs)
        self._resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self._resume_step)
        return self._experiment


def resolve_ckpt_path(
    ckpt_path: str | None, subcommand: str, root: str | os.PathLike, dirpath: str | os.PathLike | None = None,
    weights_only: bool | None = None,
) -> str | None:
    """The checkpoint file a ``tc-clip`` subcommand should load: ``last`` becomes this run's newest readable
    ``last*.ckpt`` (``fit`` without one keeps ``"last"``: Lightning then starts from scratch); a local file
    is checked first (:func:`validate_checkpoint`); unsafe sources raise :class:`CheckpointError`."""
    check_ckpt_path(ckpt_path, weights_only)
    if ckpt_path == "last":
        found = find_last_checkpoint(root, dirpath)
        if found is None and subcommand != "fit":
            where = dirpath or f"{root}/version_*/checkpoints"
            raise CheckpointError(f"--ckpt_path last: no readable last*.ckpt in {where}")
        return found or ckpt_path
    if ckpt_path and ckpt_path not in ("best", "hpc", "registry") and not ckpt_path.startswith("registry:"):
        validate_checkpoint(ckpt_path)
    return ckpt_path
