"""Run folders of the ``tc-clip`` command: which checkpoint ``--ckpt_path`` means (``last``: this run's
newest readable ``last*.ckpt``), refusing files that are unsafe or unreadable
(:class:`~tc_clip.model.CheckpointError`, naming the file), and logging a resumed fit into its own version
folder (:func:`resume_point`, :class:`ContinuingCSVLogger`)."""

from __future__ import annotations

import csv
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import fsspec
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from tc_clip.model import CheckpointError

__all__ = [
    "ContinuingCSVLogger",
    "check_ckpt_path",
    "find_last_checkpoint",
    "resolve_ckpt_path",
    "resume_point",
    "validate_checkpoint",
]


def _protocol(path: str) -> str:
    return fsspec.utils.get_protocol(path)


def check_ckpt_path(path: str | None, weights_only: bool | None = None) -> None:
    """Refuse checkpoint sources that Lightning would read with ``weights_only=False`` (which runs any code
    pickled into the file): ``http(s)://`` URLs and an explicit ``weights_only=False``."""
    if weights_only is False:
        raise CheckpointError(
            path or "--ckpt_path", "--weights_only false is refused: loading a checkpoint that way runs code "
            "stored in the file; tc-clip checkpoints load with weights_only=True"
        )
    if path and _protocol(str(path)) in ("http", "https"):
        raise CheckpointError(
            path, "remote http(s) checkpoints are refused, because Lightning reads them with weights_only=False "
            "(code in the file would run); download the file and pass its local path"
        )


def validate_checkpoint(path: str | os.PathLike) -> None:
    """Check that ``path`` is a complete, safely loadable Lightning checkpoint, without reading its tensor
    data (``mmap``); raises :class:`CheckpointError` naming the file and the cause."""
    path = str(path)
    if _protocol(path) != "file":
        return  # fsspec remote (s3://, gs://, ...): Lightning loads these with weights_only=True
    path = path.removeprefix("file://")
    if not os.path.isfile(path):
        raise CheckpointError(path, "no such file")
    try:
        with zipfile.ZipFile(path) as zf:
            zf.namelist()  # the central directory is at the end: a truncated file fails here
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(path, f"truncated or not a torch checkpoint ({err})") from err
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - every failure is reported with the file's name
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(path, f"refused by torch's weights-only loader ({first})") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(path, "not a Lightning checkpoint (no 'state_dict')")


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
            rank_zero_warn(f"--ckpt_path last: skipping {err.path}: {err.reason}")
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
            raise CheckpointError(where, "--ckpt_path last finds no readable last*.ckpt there")
        return found or ckpt_path
    if ckpt_path and ckpt_path not in ("best", "hpc", "registry") and not ckpt_path.startswith("registry:"):
        validate_checkpoint(ckpt_path)
    return ckpt_path
