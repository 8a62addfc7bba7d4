"""Shared helpers of the tests that run ``tc-clip``: the demo config's arguments, the command in a fresh
process, and callbacks that a test puts into such a run by class path (``run_helpers.KillAt``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "configs" / "demo.yaml")


def demo_args(cache: Path, root: Path, *extra: str) -> list[str]:
    """The demo config on 3 classes x 4 videos (1 validation video each), batch 4, 2 epochs, into ``root``."""
    return [
        "--config", DEMO,
        "--data.cache_dir", str(cache), "--data.num_classes", "3", "--data.videos_per_class", "4",
        "--data.val_per_class", "1", "--data.batch_size", "4", "--data.num_workers", "0",
        "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root), *extra,
    ]


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m tc_clip.cli ARGS`` in a fresh process, with this checkout's sources and these helpers."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    return subprocess.run([sys.executable, "-m", "tc_clip.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


class KillAt(L.Callback):
    """The process SIGKILLs itself when training reaches ``global_step``: before that step's batch runs (the
    checkpoint of the previous step, if any, is written), or with ``in_validation`` in the first validation
    batch after it."""

    def __init__(self, global_step: int, in_validation: bool = False) -> None:
        self.global_step = global_step
        self.in_validation = in_validation

    def _kill(self, trainer) -> None:
        if trainer.global_step == self.global_step and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.in_validation:
            self._kill(trainer)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self.in_validation:
            self._kill(trainer)


class KillAtPredictBatch(L.Callback):
    """SIGKILLs its own process when ``predict`` reaches batch ``batch`` (the earlier batches are finished)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class CountPredicted(L.Callback):
    """Records the dataset indices that ``predict`` computes (in this process)."""

    seen: list[int] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        CountPredicted.seen += batch["index"].tolist()


class Killed(BaseException):
    """A simulated kill inside the test process (nothing catches it)."""


class DieAt(L.Callback):
    """Raises :class:`Killed` when training reaches ``global_step`` (in-process stand-in for :class:`KillAt`)."""

    def __init__(self, global_step: int) -> None:
        self.global_step = global_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.global_step:
            raise Killed
