"""Run results on disk: one JSON line per evaluation epoch, read back by ``tc-clip report``.

Every validation or test epoch appends one record to ``<log dir>/eval_results.jsonl``::

    {"stage": "val" | "test", "epoch": 3, "step": 120, "ckpt_path": null | "...",
     "meta": {"protocol": "few_shot", "benchmark": "hmdb51", "shot": 2, "seed": 1, ...},
     "sets": [{"name": "hmdb51/split1", "group": "hmdb51", "role": null, "top1": 0.51, "top5": 0.83,
               "videos": 1530, "skipped": 0}],
     "summary": {"hmdb51/top1_mean": 0.51, ...}}

Accuracies are fractions in [0, 1]. Counts live here, not in the per-epoch metric curves.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

EVAL_RESULTS_FILE = "eval_results.jsonl"


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_eval_record(log_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Append one evaluation record (see the module docstring) to ``<log_dir>/eval_results.jsonl``."""
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
    """All records of one run folder, in the order they were written (a torn last line is ignored)."""
    path = Path(run_dir) / EVAL_RESULTS_FILE
    if not path.is_file():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
