"""Finished run folders as the report reads them: the saved ``config.yaml``, the records of
``eval_results.jsonl`` and which record a run reports (:func:`select_record`: its last test record, else
the validation record of the epoch its checkpoint selection kept)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tc_clip.errors import UserError
from tc_clip.results.records import EVAL_RESULTS_FILE, EvalSetResult, read_eval_records

CONFIG_FILE = "config.yaml"


class ReportError(UserError, ValueError):
    """A run folder that cannot be reported; the message names the folder, file or key at fault."""


@dataclass
class RunResult:
    """The record of one run folder that the tables use, and why that one (``source``)."""

    name: str
    path: Path
    record: dict[str, Any]
    source: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> dict[str, Any]:
        return self.record.get("meta") or {}

    @property
    def protocol(self) -> str | None:
        return self.meta.get("protocol")

    @property
    def sets(self) -> list[EvalSetResult]:
        return [EvalSetResult.from_entry(s) for s in self.record.get("sets") or []]


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``<run_dir>/config.yaml`` as saved by LightningCLI (``{}`` when the run has none)."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ReportError(f"{path}: not valid YAML ({err})") from err
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ReportError(f"{path}: expected a mapping of options, got {type(config).__name__}")
    return config


def monitored_metric(config: Mapping[str, Any]) -> tuple[str | None, str]:
    """``(monitor, mode)`` of the run's checkpoint selection: ``checkpoint.monitor`` / ``.mode`` (the
    ``tc-clip`` options), else those of a ``ModelCheckpoint`` in ``trainer.callbacks``."""
    ckpt = config.get("checkpoint")
    if isinstance(ckpt, Mapping) and "monitor" in ckpt:
        return ckpt.get("monitor"), str(ckpt.get("mode") or "max")
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    for cb in callbacks if isinstance(callbacks, list) else [callbacks]:
        if isinstance(cb, Mapping) and str(cb.get("class_path", "")).endswith("ModelCheckpoint"):
            args = cb.get("init_args") or {}
            return args.get("monitor"), str(args.get("mode") or "max")
    return None, "max"


def record_metric(record: Mapping[str, Any], name: str) -> float | None:
    """The value of a logged metric name in a record: ``{stage}/{set}/top1|top5`` from ``sets``, any other
    ``{stage}/{key}`` from ``summary``; None when the record does not hold it."""
    stage, _, key = name.partition("/")
    if stage != record.get("stage") or not key:
        return None
    value = (record.get("summary") or {}).get(key)
    for s in record.get("sets") or []:
        for metric in ("top1", "top5"):
            if key == f"{s.get('name')}/{metric}":
                value = s.get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def select_record(records: Sequence[dict[str, Any]], monitor: str | None, mode: str, where: str) -> tuple[dict, str]:
    """The record a run reports: its last ``test`` record; else the ``val`` record of the epoch that the
    run's checkpoint selection kept (best ``monitor``, first of equal values, as ``ModelCheckpoint``);
    else, with no monitor, the last ``val`` record. Returns ``(record, a phrase saying which)``."""
    tests = [r for r in records if r.get("stage") == "test"]
    if tests:
        return tests[-1], "test"
    by_epoch: dict[Any, dict] = {}
    for r in records:
        if r.get("stage") == "val":
            by_epoch.pop(r.get("epoch"), None)  # a resumed run re-validating an epoch: the later one counts
            by_epoch[r.get("epoch")] = r
    vals = list(by_epoch.values())
    if not vals:
        raise ReportError(f"{where}: {EVAL_RESULTS_FILE} holds no val or test record")
    if monitor is None:
        return vals[-1], f"val epoch {vals[-1].get('epoch')} (last; no checkpoint.monitor)"
    if mode not in ("max", "min"):
        raise ReportError(f"{where}: checkpoint.mode {mode!r} is neither 'max' nor 'min'")
    scored = [(record_metric(r, monitor), r) for r in vals]
    scored = [(v, r) for v, r in scored if v is not None and math.isfinite(v)]
    if not scored:
        keys = sorted({f"val/{s.get('name')}/top1" for r in vals for s in r.get("sets") or []}
                      | {f"val/{k}" for r in vals for k in (r.get("summary") or {})})
        raise ReportError(f"{where}: the monitored metric {monitor!r} (checkpoint.monitor in {CONFIG_FILE}) is in "
                          f"no val record; the records hold {keys}")
    best_value, best = scored[0]
    for value, r in scored[1:]:
        if (value > best_value) if mode == "max" else (value < best_value):
            best_value, best = value, r
    return best, f"val epoch {best.get('epoch')} (best {monitor})"


def load_run(run_dir: str | os.PathLike, name: str | None = None) -> RunResult:
    """One finished run folder (``eval_results.jsonl``, ``config.yaml``) with its selected record."""
    path = Path(run_dir)
    name = name or str(path)
    try:
        records = read_eval_records(path)
    except ValueError as err:
        raise ReportError(str(err)) from err
    if not records:
        raise ReportError(f"{name}: no {EVAL_RESULTS_FILE} with evaluation records")
    config = read_run_config(path)
    monitor, mode = monitored_metric(config)
    record, source = select_record(records, monitor, mode, name)
    if not isinstance(record.get("sets"), list) or not all(isinstance(s, dict) for s in record["sets"]):
        raise ReportError(f"{name}: the selected record ({source}) has no list of evaluation sets under 'sets'")
    return RunResult(name, path, record, source, config)


def find_runs(paths: Sequence[str | os.PathLike]) -> tuple[list[tuple[str, Path]], list[Path]]:
    """``([(name, run folder)], [sweep CSV files])`` for the command-line arguments: a run folder, a
    folder searched recursively for run folders and ``wise_sweep_*.csv`` files, or a sweep CSV file."""
    runs: list[tuple[str, Path]] = []
    sweeps: list[Path] = []
    for arg in paths:
        p = Path(arg)
        if p.is_file():
            if p.suffix != ".csv":
                raise ReportError(f"{arg}: give run folders (with {EVAL_RESULTS_FILE}) or WiSE-FT sweep CSV files")
            sweeps.append(p)
            continue
        if not p.is_dir():
            raise ReportError(f"{arg}: no such run folder or file")
        found = sorted({f.parent for f in p.rglob(EVAL_RESULTS_FILE)})
        csvs = sorted(p.rglob("wise_sweep_*.csv"))
        if not found and not csvs:
            raise ReportError(f"{arg}: no {EVAL_RESULTS_FILE} and no wise_sweep_*.csv in it or below it")
        runs += [(str(f), f) for f in found if all(f != r for _, r in runs)]
        sweeps += [c for c in csvs if c not in sweeps]
    return runs, sweeps
