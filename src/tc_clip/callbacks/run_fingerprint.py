"""The run's fingerprint in every checkpoint and in its log folder (added by ``tc-clip fit``), so a resume can
tell its own run from another one in the same folder."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from tc_clip.model import CheckpointError

#: The checkpoint entry: ``{"keys": {dotted key: JSON value}}``.
CHECKPOINT_KEY = "tc_clip_run"
#: The log folder's copy (also written by a run killed before its first checkpoint).
RUN_FILE = "run.json"
#: What a refused resume can do instead.
RESUME_HINT = (
    "Resume with the settings it was trained with, start a new run (without --ckpt_path, or in another "
    "--trainer.default_root_dir), or start a new run from its weights with --init_from PATH"
)


class RunFingerprint(Callback):
    """Stores ``keys`` (see :mod:`tc_clip.cli.fingerprint`), plus the global batch this trainer makes
    (``data.batch_size`` x processes x accumulation), in every checkpoint under ``tc_clip_run`` and in
    ``<log dir>/run.json``."""

    def __init__(self, keys: Mapping[str, str] | None = None) -> None:
        self.keys: dict[str, str] = dict(keys or {})

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        per_device = getattr(trainer.datamodule, "batch_size", None)
        if stage == "fit" and per_device:
            self.keys["global_batch"] = json.dumps(per_device * trainer.world_size * trainer.accumulate_grad_batches)
        log_dir = trainer.log_dir if trainer.loggers else None  # a broadcast: every process asks
        if stage == "fit" and log_dir and trainer.is_global_zero:
            os.makedirs(log_dir, exist_ok=True)
            with open(os.path.join(log_dir, RUN_FILE), "w") as f:
                json.dump({"subcommand": "fit", "keys": self.keys}, f, indent=1, sort_keys=True)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        theirs = stored_keys(checkpoint)
        if theirs is None or not self.keys:
            return
        differing = [f"{k} ({theirs.get(k, 'unset')} -> {self.keys.get(k, 'unset')})"
                     for k in sorted(set(theirs) | set(self.keys)) if theirs.get(k) != self.keys.get(k)]
        if differing:
            raise RunMismatchError(str(trainer.ckpt_path), differing, RESUME_HINT)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {"keys": dict(self.keys)}


def stored_keys(checkpoint: Mapping[str, Any]) -> dict[str, str] | None:
    """The fingerprint keys a checkpoint holds, or ``None`` (written before fingerprints, or not by fit)."""
    entry = checkpoint.get(CHECKPOINT_KEY)
    keys = entry.get("keys") if isinstance(entry, Mapping) else None
    return {str(k): str(v) for k, v in keys.items()} if isinstance(keys, Mapping) else None


#: How many differing keys an error names (the rest are counted).
MAX_SHOWN = 8


class RunMismatchError(CheckpointError):
    """A checkpoint that belongs to another run (its fingerprint differs in the keys named)."""

    def __init__(self, path: str, differing: list[str], hint: str = "") -> None:
        self.differing = differing
        shown = "; ".join(differing[:MAX_SHOWN]) + (
            f"; and {len(differing) - MAX_SHOWN} more" if len(differing) > MAX_SHOWN else "")
        super().__init__(path, "a checkpoint of another run, which differs in " + shown
                         + (f". {hint}" if hint else ""))
