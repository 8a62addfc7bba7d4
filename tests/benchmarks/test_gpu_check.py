"""benchmarks/gpu_check.py on the CPU with the tiny profile: every check runs and the table holds its rows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tc_clip

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_tiny_on_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(tc_clip.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    script = REPO / "benchmarks" / "gpu_check.py"
    done = subprocess.run([sys.executable, str(script), "--device", "cpu", "--tiny", "--dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == "| check | setting | result | compared with | peak memory |"
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]
    assert all(len(c) == 5 and not c[2].startswith("FAILED") for c in cells), rows
    model = [c for c in cells if c[0].startswith("model:")]
    assert [c[0].split(",")[0] for c in model] == ["model: eval forward"] * 2 + ["model: train step"] * 2
    assert all(c[2].endswith(" ms") and "x encode_image" in c[3] for c in model)
    assert "compiled (eager)" in model[1][1] and "x TCCLIP eager" in model[1][3]
    fits = [c for c in cells if c[0].startswith("fit:")]
    assert [c[1].split(", ")[-1] for c in fits] == ["1 loader workers", "2 loader workers"]
    assert all("clips/s" in c[2] and "every loss finite" in c[2] and "ms per step for data" in c[3] for c in fits)
    decode = {c[1]: c for c in cells if c[0].startswith("decode:")}
    assert decode["PyAV on the CPU (tc-clip's pyav decoder)"][2].endswith("ms per clip")
    assert decode["torchcodec CUDA (NVDEC)"][2].startswith("skipped: no CUDA device")
    assert "torchcodec on the CPU" in decode
    assert not list(tmp_path.iterdir())  # the working folder is removed
