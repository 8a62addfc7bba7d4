"""Run folders of the ``tc-clip`` command: which checkpoint ``--ckpt_path`` means (``last``: the newest
readable ``last*.ckpt`` of this run, i.e. whose fingerprint matches), refusing files that are unsafe,
unreadable, damaged or of another run (:class:`~tc_clip.model.CheckpointError`, naming the file), and logging a
resumed fit into its own version folder (:func:`resume_point`, :func:`reusable_version`,
:class:`ContinuingCSVLogger`).

Whether a path is remote is decided by Lightning's own test (fsspec's protocol, ``_is_local_file_protocol``),
and local paths are handed to Lightning absolute, so that a folder named ``http...`` is never a URL to it."""

from __future__ import annotations

import csv
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import fsspec
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from tc_clip.callbacks.run_fingerprint import RESUME_HINT, RUN_FILE, RunMismatchError, stored_keys
from tc_clip.cli.fingerprint import differences
from tc_clip.model import CheckpointError

__all__ = [
    "ContinuingCSVLogger",
    "check_ckpt_path",
    "find_last_checkpoint",
    "local_path",
    "resolve_ckpt_path",
    "resume_point",
    "next_version",
    "previous_version",
    "reusable_version",
    "validate_checkpoint",
]


def _protocol(path: str) -> str:
    return fsspec.utils.get_protocol(path)


def local_path(path: str | os.PathLike) -> str:
    """A local path made absolute (Lightning reads any string that starts with ``http`` as a URL); remote
    ones (by Lightning's test) unchanged."""
    if not _is_local_file_protocol(path):
        return str(path)
    return os.path.abspath(os.path.expanduser(str(path).removeprefix("file://")))


def check_ckpt_path(path: str | None, weights_only: bool | None = None) -> None:
    """Refuse checkpoint sources that Lightning would read with ``weights_only=False`` (which runs any code
    pickled into the file): ``http(s)://`` URLs and an explicit ``weights_only=False``."""
    if weights_only is False:
        raise CheckpointError(
            path or "--ckpt_path", "--weights_only false is refused: loading a checkpoint that way runs code "
            "stored in the file; tc-clip checkpoints load with weights_only=True"
        )
    # remote by Lightning's test, and a name Lightning hands to torch hub's downloader (weights_only=False)
    if path and not _is_local_file_protocol(path) and (str(path).startswith("http") or _protocol(str(path)) in (
            "http", "https")):
        raise CheckpointError(
            path, "remote http(s) checkpoints are refused, because Lightning reads them with weights_only=False "
            "(code in the file would run); download the file and pass its local path"
        )


def validate_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """Check that ``path`` is a complete, undamaged (every member's CRC), safely loadable Lightning checkpoint;
    returns it loaded with ``mmap`` (``None`` for a remote one, which Lightning loads with
    ``weights_only=True``). Raises :class:`CheckpointError` naming the file and the cause."""
    path = str(path)
    if not _is_local_file_protocol(path):
        return None
    path = local_path(path)
    if not os.path.isfile(path):
        raise CheckpointError(path, "no such file")
    try:
        with zipfile.ZipFile(path) as zf:  # the central directory is at the end: a truncated file fails here
            damaged = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointError(path, f"truncated or not a torch checkpoint ({err})") from err
    if damaged is not None:
        raise CheckpointError(path, f"damaged: the CRC of {damaged} does not match its content")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - every failure is reported with the file's name
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(path, f"refused by torch's weights-only loader ({first})") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(path, "not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def find_last_checkpoint(
    root: str | os.PathLike, dirpath: str | os.PathLike | None = None, keys: dict[str, str] | None = None
) -> str | None:
    """The newest readable ``last*.ckpt`` (``last.ckpt``, or ``last-prev.ckpt`` when that is damaged) of this
    run: in ``dirpath`` when the checkpoint folder is set, else in ``root/version_*/checkpoints`` and
    ``root/checkpoints``, never in other experiments' folders below ``root``. With ``keys`` (the run's
    fingerprint, :mod:`tc_clip.cli.fingerprint`) only a checkpoint whose stored fingerprint matches is taken,
    and :class:`RunMismatchError` names the differing keys of the closest one when there are readable
    checkpoints but none of this run. Unreadable files are skipped with a warning naming them. Returns an
    absolute path."""
    folders = [Path(dirpath)] if dirpath else [*Path(root).glob("version_*/checkpoints"), Path(root) / "checkpoints"]
    candidates = [p for d in folders if d.is_dir() for p in d.glob("last*.ckpt") if p.is_file()]
    others: list[tuple[str, list[str]]] = []
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            ckpt = validate_checkpoint(path)
        except CheckpointError as err:
            rank_zero_warn(f"--ckpt_path last: skipping {err.path}: {err.reason}")
            continue
        if keys is not None:
            theirs = stored_keys(ckpt or {})
            differing = (["it has no run fingerprint"] if theirs is None
                         else differences(keys, theirs, ("global_batch",)))
            if differing:
                others.append((local_path(path), differing))
                continue
        rank_zero_info(f"--ckpt_path last: resuming from {local_path(path)}")
        return local_path(path)
    if others:
        path, differing = min(others, key=lambda o: len(o[1]))
        raise RunMismatchError(
            path, differing, f"--ckpt_path last finds no checkpoint of this run under {root} ({len(others)} of "
            f"other runs; the closest is named). {RESUME_HINT}"
        )
    return None


def resume_point(ckpt_path: str | None, root: str | os.PathLike) -> tuple[int, int] | None:
    """``(N, global step)`` when ``ckpt_path`` lies in ``root/version_N`` (so a resumed run logs into its
    own folder, from that step on), else ``None``."""
    if not ckpt_path or not _is_local_file_protocol(ckpt_path) or not os.path.isfile(local_path(ckpt_path)):
        return None
    ckpt_path = local_path(ckpt_path)
    try:
        rel = Path(ckpt_path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return None
    m = re.fullmatch(r"version_(\d+)", rel.parts[0]) if len(rel.parts) > 1 else None
    if not m:
        return None
    step = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True).get("global_step", 0)
    return int(m.group(1)), int(step)


def _versions(root: str | os.PathLike) -> dict[int, Path]:
    found = {}
    for folder in Path(root).glob("version_*"):
        m = re.fullmatch(r"version_(\d+)", folder.name)
        if m and folder.is_dir():
            found[int(m.group(1))] = folder
    return found


def next_version(root: str | os.PathLike) -> int:
    """The number of a new ``root/version_N`` (as Lightning's loggers count)."""
    return max(_versions(root), default=-1) + 1


def previous_version(root: str | os.PathLike, keys: dict[str, str], subcommand: str) -> int | None:
    """The newest ``root/version_N`` whose ``run.json`` holds these keys for ``subcommand``."""
    for number, folder in sorted(_versions(root).items(), reverse=True):
        try:
            run = json.loads((folder / RUN_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(run, dict) and run.get("subcommand") == subcommand and run.get("keys") == keys:
            return number
    return None


def reusable_version(root: str | os.PathLike, keys: dict[str, str] | None) -> int | None:
    """The newest ``root/version_N`` left by a run of these ``keys`` killed before its first checkpoint (its
    ``run.json`` matches and it holds no checkpoint) or left empty, so ``--ckpt_path last`` continues there
    instead of adding one more empty folder; ``None`` when there is none."""
    found = []
    for folder in Path(root).glob("version_*"):
        m = re.fullmatch(r"version_(\d+)", folder.name)
        if not m or not folder.is_dir() or any(folder.rglob("*.ckpt")):
            continue
        run_file = folder / RUN_FILE
        if run_file.is_file():
            try:
                theirs = json.loads(run_file.read_text()).get("keys")
            except (json.JSONDecodeError, OSError, AttributeError):
                continue
            if keys is None or not isinstance(theirs, dict) or differences(keys, theirs, ("global_batch",)):
                continue
        elif any(p.is_file() for p in folder.rglob("*")):
            continue  # another command's folder (validate, predict, ...): not ours to reuse
        found.append(int(m.group(1)))
    return max(found, default=None)


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
    weights_only: bool | None = None, keys: dict[str, str] | None = None,
) -> str | None:
    """The checkpoint file a ``tc-clip`` subcommand should load, absolute when local: ``last`` becomes this
    run's newest readable ``last*.ckpt`` (``fit`` without one returns ``None``: a new run); a local file is
    checked first (:func:`validate_checkpoint`); unsafe sources raise :class:`CheckpointError`. With
    ``keys`` (``fit``), a checkpoint of another run raises :class:`RunMismatchError` naming the keys."""
    check_ckpt_path(ckpt_path, weights_only)
    if ckpt_path == "last":
        found = find_last_checkpoint(root, dirpath, keys)
        if found is None and subcommand != "fit":
            where = dirpath or f"{root}/version_*/checkpoints"
            raise CheckpointError(where, "--ckpt_path last finds no readable last*.ckpt there")
        if found is None:
            rank_zero_info(f"--ckpt_path last: no checkpoint under {dirpath or root} yet: starting a new run")
        return found
    if ckpt_path and ckpt_path not in ("best", "hpc", "registry") and not ckpt_path.startswith("registry:"):
        ckpt = validate_checkpoint(ckpt_path)
        ckpt_path = local_path(ckpt_path)
        theirs = stored_keys(ckpt or {})
        if keys is not None and ckpt is not None:
            if theirs is None:
                rank_zero_warn(f"{ckpt_path} has no run fingerprint (an older tc-clip): resuming it unchecked")
            elif differing := differences(keys, theirs, ("global_batch",)):
                raise RunMismatchError(ckpt_path, differing, RESUME_HINT)
    return ckpt_path
