"""The evaluation record (:mod:`tc_clip.results.records`): one builder, one schema, and ``tc_clip.results``
imports without torch."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from tc_clip.results import (
    RECORD_KEYS,
    SET_KEYS,
    EvalSetResult,
    append_eval_record,
    eval_record,
    read_eval_records,
)


def test_a_record_round_trips_with_the_schema_and_non_finite_values_as_null(tmp_path):
    rows = [EvalSetResult("hmdb51/split1", 0.5, 0.8, "hmdb51", None, 30, 1),
            EvalSetResult("hmdb51/split2", float("nan"), 0.7, "hmdb51", None, 30, 0)]
    record = eval_record("test", epoch=3, step=120, results=rows, summary={"hmdb51/top1_mean": 0.5},
                         meta={"protocol": "zero_shot"}, ckpt_path="best.ckpt")
    assert tuple(record) == RECORD_KEYS and all(tuple(s) == SET_KEYS for s in record["sets"])
    append_eval_record(tmp_path, record)
    (back,) = read_eval_records(tmp_path)
    assert back["sets"][1]["top1"] is None and back["sets"][0] == rows[0].entry()
    assert EvalSetResult.from_entry(back["sets"][0]) == rows[0]
    assert math.isnan(rows[1].top1) and back["meta"] == {"protocol": "zero_shot"} and back["epoch"] == 3


def test_results_import_without_torch():
    code = "import sys, tc_clip.results; assert 'torch' not in sys.modules, 'torch was imported'"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
