"""Evaluation results as data: the result of one evaluation set (:class:`EvalSetResult`, the one row shape
of every table, summary and sweep file) and the run's results file ``<log dir>/eval_results.jsonl``.

Every validation or test epoch appends one record (:func:`eval_record` builds it, :func:`append_eval_record`
writes it)::

    {"stage": "val" | "test", "epoch": 3, "step": 120, "ckpt_path": null | "...",
     "meta": {"protocol": "few_shot", "benchmark": "hmdb51", "shot": 2, "seed": 1, ...},
     "sets": [{"name": "hmdb51/split1", "group": "hmdb51", "role": null, "top1": 0.51, "top5": 0.83,
               "videos": 1530, "skipped": 0}],
     "summary": {"hmdb51/top1_mean": 0.51, ...}}

Accuracies are fractions in [0, 1]; a value that is not finite is written as ``null``. Counts live here,
not in the per-epoch metric curves.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVAL_RESULTS_FILE = "eval_results.jsonl"
#: How an evaluation stage is named in records and metric names (``val/<set>/top1``).
STAGE_PREFIX = {"validate": "val", "test": "test", "predict": "predict"}
#: The keys of a record, and of each entry of its ``sets``, in the order they are written.
RECORD_KEYS = ("stage", "epoch", "step", "ckpt_path", "meta", "sets", "summary")
SET_KEYS = ("name", "group", "role", "top1", "top5", "videos", "skipped")


@dataclass(frozen=True)
class EvalSetResult:
    """The accuracies (fractions) of one evaluation set, with the grouping the data module gave it
    (``group``: the benchmark whose splits are averaged; ``role``: ``"base"`` / ``"novel"`` / None), how
    many videos it holds and how many of them were unreadable; in a WiSE-FT sweep also the ratio
    ``alpha`` and the ``stage`` it was evaluated in."""

    name: str
    top1: float
    top5: float | None = None
    group: str | None = None
    role: str | None = None
    videos: int = 0
    skipped: int = 0
    alpha: float | None = None
    stage: str | None = None

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> EvalSetResult:
        """A set of a record's ``sets`` as written (values unchecked: a non-finite accuracy reads as None)."""
        return cls(**{key: entry.get(key) for key in SET_KEYS})

    def entry(self) -> dict[str, Any]:
        """The set as it stands in a record's ``sets`` (:data:`SET_KEYS`)."""
        return {key: getattr(self, key) for key in SET_KEYS}


def eval_record(
    stage: str,
    epoch: int | None,
    step: int,
    results: Sequence[EvalSetResult],
    summary: Mapping[str, float],
    meta: Mapping[str, Any] | None = None,
    ckpt_path: str | None = None,
) -> dict[str, Any]:
    """The record of one evaluation (see the module docstring); ``stage`` is ``"val"`` or ``"test"``."""
    return {
        "stage": stage,
        "epoch": epoch,
        "step": step,
        "ckpt_path": ckpt_path,
        "meta": dict(meta or {}),
        "sets": [r.entry() for r in results],
        "summary": dict(summary),
    }


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_eval_record(log_dir: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Append one evaluation record (:func:`eval_record`) to ``<log_dir>/eval_results.jsonl``."""
    path = Path(log_dir) / EVAL_RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = json.loads(json.dumps(record, default=str), parse_constant=lambda c: None)
    clean["sets"] = [{k: _finite_or_none(v) for k, v in s.items()} for s in clean.get("sets", [])]
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(clean, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return path


def read_eval_records(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of one run folder, in the order they were written. A torn last line (a run killed
    while writing) is ignored; any other line that is not a JSON object raises, naming file and line."""
    path = Path(run_dir) / EVAL_RESULTS_FILE
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        lines = [(n, line.strip()) for n, line in enumerate(f, start=1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                continue
            raise ValueError(f"{path}:{n}: not a JSON record ({err.msg})") from err
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records
