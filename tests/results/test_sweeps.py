"""WiSE-FT sweep files (:mod:`tc_clip.results.sweeps`): CSV round trip, trade-off points (a group counts
once), and ``tc-clip report`` combining the sweeps of several runs into one plot and table."""

from __future__ import annotations

import csv
import json

import pytest

from tc_clip import results as R
from tc_clip.cli.report import main as report_main
from tc_clip.results import EvalSetResult
from wise_helpers import check_png


def row(alpha: float, name: str, top1: float, top5: float, videos: int, group: str | None = None) -> EvalSetResult:
    return EvalSetResult(name, top1, top5, group, videos=videos, alpha=alpha, stage="test")


def test_report_command_combines_sweeps(tmp_path):
    rows = []
    for alpha in (0.0, 0.5, 1.0):
        rows += [row(alpha, "k400_val", 0.5 + 0.3 * alpha, 0.9, 10)]
        rows += [
            row(alpha, f"hmdb51_split{i}", 0.5 - 0.1 * alpha + 0.01 * i, 0.8, 5, "hmdb51")
            for i in (1, 2, 3)
        ]
        rows += [row(alpha, "ucf101_split1", 0.7 - 0.2 * alpha, 0.9, 5, "ucf101")]
    R.write_sweep_csv(tmp_path / "k400.csv", [r for r in rows if r.name == "k400_val"])
    R.write_sweep_csv(tmp_path / "zs.csv", [r for r in rows if r.name != "k400_val"])
    assert R.read_sweep_csv(tmp_path / "zs.csv") == [r for r in rows if r.name != "k400_val"]
    points = R.tradeoff_points(rows, "k400_val", ["hmdb51", "ucf101"])
    hmdb = {a: sum(0.5 - 0.1 * a + 0.01 * i for i in (1, 2, 3)) / 3 for a in (0.0, 0.5, 1.0)}
    for p in points:  # a group counts once, as the mean of its splits
        assert p.zero_shot_top1 == pytest.approx((hmdb[p.alpha] + 0.7 - 0.2 * p.alpha) / 2)
        assert p.finetune_top1 == pytest.approx(0.5 + 0.3 * p.alpha)
    out = tmp_path / "plot"
    args = [str(tmp_path / "k400.csv"), str(tmp_path / "zs.csv"), "--finetune-set", "k400_val",
            "--zero-shot-sets", "hmdb51", "ucf101", "--baseline", f"ViFi={tmp_path / 'zs.csv'}", "-o", str(out)]
    assert report_main(args) == 0
    check_png(out / "wise_tradeoff.png")
    assert json.loads((out / "wise_sweep.json").read_text())["results"][0]["zero_shot"].keys() == {
        "hmdb51",
        "ucf101",
    }
    with open(out / "wise_tradeoff.csv") as f:  # the report's table: one row per ratio
        table = list(csv.DictReader(f))
    assert [float(r["alpha"]) for r in table] == [p.alpha for p in points]
    assert [float(r["k400_val"]) for r in table] == pytest.approx([100 * p.finetune_top1 for p in points])
    assert "## Weight-space ensembling" in (out / "report.md").read_text()
    assert report_main([str(tmp_path / "k400.csv"), "--finetune-set", "nope", "-o", str(out)]) == 2


def test_suite_sweep_has_no_fine_tuning_set_and_draws_no_plot(tmp_path, capsys):
    """The suite's sets are all zero-shot targets: HMDB-51 (the first) is not plotted as 'fine-tuned'."""
    rows = [row(a, f"{b}/split{i}", 0.5 - 0.1 * a, 0.9, 5, b)
            for a in (0.0, 1.0) for b in ("hmdb51", "ucf101", "k600") for i in (1, 2)]
    R.write_sweep_csv(tmp_path / "suite.csv", rows)
    assert R.default_targets(rows)[0] is None and R.tradeoff_points(rows) == []
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "suite.csv"), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert not (out / "wise_tradeoff.png").exists()
    assert "no trade-off plot" in text.lower() and "--finetune-set" in text and "hmdb51, ucf101, k600" in text
    # with the K-400 run's sweep, K-400 is the fine-tuning set wherever its CSV comes in the list
    k400 = [row(a, "k400/val", 0.6 + 0.2 * a, 0.9, 10, "k400") for a in (0.0, 1.0)]
    assert R.default_targets(rows + k400) == ("k400", ["hmdb51", "ucf101", "k600"])
    R.write_sweep_csv(tmp_path / "k400.csv", k400)
    assert report_main([str(tmp_path / "suite.csv"), str(tmp_path / "k400.csv"), "-o", str(out)]) == 0
    check_png(out / "wise_tradeoff.png")
