"""tc-clip report (issue 11): which record of a run counts, the paper's tables from synthetic run folders
(Markdown compared with expected tables, CSV, plot), bad input, and the results file reader."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tc_clip import results as R
from tc_clip.cli.report import main as report_main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def s(name: str, top1: float, group: str | None = None, role: str | None = None, top5: float = 0.9) -> dict:
    return {"name": name, "group": group, "role": role, "top1": top1, "top5": top5, "videos": 10, "skipped": 0}


def write_run(folder: Path, records: list[dict], monitor: str | None = None, config: dict | None = None) -> Path:
    """A run folder as a finished ``tc-clip`` run leaves it: config.yaml and eval_results.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(config or {})
    if monitor is not None:
        config["checkpoint"] = {"monitor": monitor, "mode": "max"}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    for record in records:
        R.append_eval_record(folder, record)
    return folder


def rec(stage: str, sets: list[dict], epoch: int = 0, ckpt: str | None = None, summary: dict | None = None,
        **meta) -> dict:
    return {"stage": stage, "epoch": epoch, "step": 10 * epoch, "ckpt_path": ckpt, "meta": meta, "sets": sets,
            "summary": summary or {}}


def few_shot_runs(root: Path) -> dict[str, Path]:
    fs = dict(protocol="few_shot", seed=0)
    hmdb = dict(fs, benchmark="hmdb51")
    ucf = dict(fs, benchmark="ucf101")
    return {
        # validation only: the epoch the checkpoint selection kept (0.46 at epoch 9), not the last one
        "fs_hmdb_k2": write_run(root / "fs_hmdb_k2", [
            rec("val", [s("hmdb51/split1", v)], epoch=e, shot=2, **hmdb)
            for e, v in ((4, 0.40), (9, 0.46), (14, 0.45))], monitor="val/hmdb51/split1/top1"),
        # a test record wins over the validation records
        "fs_hmdb_k4": write_run(root / "fs_hmdb_k4", [
            rec("val", [s("hmdb51/split1", 0.90)], epoch=4, shot=4, **hmdb),
            rec("test", [s("hmdb51/split1", 0.56)], epoch=4, shot=4, **hmdb)], monitor="val/hmdb51/split1/top1"),
        "fs_ucf_k2": write_run(root / "fs_ucf_k2", [rec("test", [s("ucf101/split1", 0.70)], shot=2, **ucf)]),
        "fs_ucf_k4": write_run(root / "fs_ucf_k4", [rec("test", [s("ucf101/split1", 0.80)], shot=4, **ucf)]),
    }


def b2n_runs(root: Path) -> dict[str, Path]:
    def sets(bench, base, novel):
        return [s(f"{bench}/base", base, bench, "base"), s(f"{bench}/novel", novel, bench, "novel")]

    meta = dict(protocol="base_to_novel")
    runs = {}
    for seed, base, novel in ((1, 0.70, 0.50), (2, 0.72, 0.40), (3, 0.74, 0.60)):
        # selected by base accuracy, as the configs monitor it; the best-base epoch carries its novel result
        runs[f"b2n_hmdb_s{seed}"] = write_run(root / f"b2n_hmdb_s{seed}", [
            rec("val", sets("hmdb51", base - 0.1, 0.99), epoch=1, benchmark="hmdb51", seed=seed, **meta),
            rec("val", sets("hmdb51", base, novel), epoch=2, benchmark="hmdb51", seed=seed, **meta),
        ], monitor="val/hmdb51/base/top1")
    runs["b2n_ucf_s1"] = write_run(root / "b2n_ucf_s1", [
        rec("test", sets("ucf101", 0.90, 0.80), benchmark="ucf101", seed=1, **meta)])
    return runs


WISE = {"trainer": {"callbacks": [{"class_path": "tc_clip.callbacks.ensemble.WeightSpaceEnsemble",
                                   "init_args": {"alpha": 0.7}}]}}


def zero_shot_runs(root: Path) -> dict[str, Path]:
    meta = dict(protocol="zero_shot", benchmark=None)

    def splits(bench, values):
        return [s(f"{bench}/split{i}", v, bench) for i, v in enumerate(values, start=1)]

    return {
        "zs_hmdb": write_run(root / "zs_hmdb", [
            rec("test", splits("hmdb51", (0.50, 0.52, 0.54)), ckpt="k400/best.ckpt", **meta)], config=WISE),
        "zs_ucf": write_run(root / "zs_ucf", [
            rec("test", splits("ucf101", (0.80, 0.82, 0.84)), ckpt="k400/best.ckpt", **meta)], config=WISE),
        "zs_plain": write_run(root / "zs_plain", [
            rec("test", splits("hmdb51", (0.40, 0.40, 0.40)), ckpt="k400/best.ckpt", **meta)]),
    }


def load(runs: dict[str, Path]) -> list[R.RunResult]:
    return [R.load_run(path, name) for name, path in runs.items()]


# ------------------------------------------------------------------------------------------- tables
def test_few_shot_table(tmp_path):
    main, detail = R.report_tables(load(few_shot_runs(tmp_path)))
    assert R.table_markdown(main) == """\
| benchmark | K=2 | K=4 | mean over K |
| --- | ---: | ---: | ---: |
| hmdb51 | 46.0 | 56.0 | 51.0 |
| ucf101 | 70.0 | 80.0 | 75.0 |
| average | 58.0 | 68.0 | 63.0 |"""
    assert R.table_markdown(detail) == """\
| run | benchmark | K | seed | eval set | top-1 | record |
| --- | --- | ---: | ---: | --- | ---: | --- |
| fs_hmdb_k2 | hmdb51 | 2 | 0 | hmdb51/split1 | 46.0 | val epoch 9 (best val/hmdb51/split1/top1) |
| fs_hmdb_k4 | hmdb51 | 4 | 0 | hmdb51/split1 | 56.0 | test |
| fs_ucf_k2 | ucf101 | 2 | 0 | ucf101/split1 | 70.0 | test |
| fs_ucf_k4 | ucf101 | 4 | 0 | ucf101/split1 | 80.0 | test |"""


def test_few_shot_missing_and_repeated_cells_are_said(tmp_path):
    runs = few_shot_runs(tmp_path)
    del runs["fs_ucf_k4"]
    runs["again"] = write_run(tmp_path / "again", [
        rec("test", [s("ucf101/split1", 0.60)], shot=2, protocol="few_shot", benchmark="ucf101", seed=1)])
    main = R.report_tables(load(runs))[0]
    assert main.rows[1] == ["ucf101", pytest.approx(0.65), None, pytest.approx(0.65)]
    assert "No run for ucf101 K=4" in main.notes[0] and "ucf101 K=2 (2 runs)" in main.notes[1]


def test_base_to_novel_table_uses_hm_of_the_means(tmp_path):
    (table,) = R.report_tables(load(b2n_runs(tmp_path)))
    assert R.table_markdown(table).split("\n\n")[0] == """\
| benchmark | seed | base | novel | HM | run | record |
| --- | --- | ---: | ---: | ---: | --- | --- |
| hmdb51 | 1 | 70.0 | 50.0 | 58.3 | b2n_hmdb_s1 | val epoch 2 (best val/hmdb51/base/top1) |
| hmdb51 | 2 | 72.0 | 40.0 | 51.4 | b2n_hmdb_s2 | val epoch 2 (best val/hmdb51/base/top1) |
| hmdb51 | 3 | 74.0 | 60.0 | 66.3 | b2n_hmdb_s3 | val epoch 2 (best val/hmdb51/base/top1) |
| hmdb51 | mean of 3 | 72.0 | 50.0 | 59.0 |  |  |
| ucf101 | 1 | 90.0 | 80.0 | 84.7 | b2n_ucf_s1 | test |
| ucf101 | mean of 1 | 90.0 | 80.0 | 84.7 |  |  |
| average | 2 benchmarks | 81.0 | 65.0 | 72.1 |  |  |"""
    # 59.0 is HM(72.0, 50.0); the mean of the three per-seed HMs would read 58.7
    per_seed = [r[4] for r in table.rows[:3]]
    assert f"{100 * sum(per_seed) / 3:.1f}" == "58.7"


def test_zero_shot_table(tmp_path):
    (table,) = R.report_tables(load(zero_shot_runs(tmp_path)))
    assert R.table_markdown(table) == """\
| model | hmdb51 | ucf101 | mean | runs |
| --- | ---: | ---: | ---: | --- |
| k400/best.ckpt (WiSE-FT α=0.7) | 52.0 ± 1.6 | 82.0 ± 1.6 | 67.0 | zs_hmdb, zs_ucf |
| k400/best.ckpt | 40.0 ± 0.0 | – | – | zs_plain |

Splits per benchmark: 3; std is the population one (ddof=0)."""


def test_zero_shot_training_set_is_a_column_of_the_zero_shot_table_not_in_the_mean(tmp_path):
    """A K-400 run of the zero-shot protocol (its fit, and the test pass of its sweep) is tabled under
    Zero-shot, as the set the model was trained on: never under Fully supervised, never in the mean."""
    runs = zero_shot_runs(tmp_path)
    meta = dict(protocol="zero_shot", benchmark="k400")
    runs["zs_k400_fit"] = write_run(tmp_path / "zs_k400_fit", [
        rec("val", [s("k400/val", 0.84, "k400")], epoch=9, **meta)], monitor="val/k400/val/top1")
    runs["zs_k400_test"] = write_run(tmp_path / "zs_k400_test", [
        rec("test", [s("k400/val", 0.85, "k400")], ckpt="k400/best.ckpt", **meta)], config=WISE)
    (table,) = R.report_tables(load(runs))
    assert R.table_markdown(table) == """\
| model | k400 (trained on) | hmdb51 | ucf101 | mean | runs |
| --- | ---: | ---: | ---: | ---: | --- |
| k400/best.ckpt (WiSE-FT α=0.7) | 85.0 ± 0.0 | 52.0 ± 1.6 | 82.0 ± 1.6 | 67.0 | zs_hmdb, zs_ucf, zs_k400_test |
| k400/best.ckpt | – | 40.0 ± 0.0 | – | – | zs_plain |
| zs_k400_fit (no checkpoint) | 84.0 ± 0.0 | – | – | – | zs_k400_fit |

Splits per benchmark: 1, 3; std is the population one (ddof=0).

k400: the set the zero-shot protocol trains on (its fine-tuning accuracy, not a zero-shot result; not in the mean)."""


def test_fully_supervised_table(tmp_path):
    run = write_run(tmp_path / "k400", [rec("test", [s("k400/val", 0.852, "k400", top5=0.969)],
                                            protocol="fully_supervised", benchmark="k400")])
    (table,) = R.report_tables([R.load_run(run, "k400_run")])
    assert R.table_markdown(table) == """\
| run | eval set | top-1 | top-5 | videos | record |
| --- | --- | ---: | ---: | ---: | --- |
| k400_run | k400/val | 85.2 | 96.9 | 10 | test |"""


# ------------------------------------------------------------------------------- which record counts
def test_select_record_rules():
    vals = [rec("val", [s("a", v)], epoch=e) for e, v in ((0, 0.5), (1, 0.7), (2, 0.7), (3, 0.6))]
    best, why = R.select_record(vals, "val/a/top1", "max", "run")
    assert best["epoch"] == 1 and why == "val epoch 1 (best val/a/top1)"  # ties: the first, as ModelCheckpoint
    assert R.select_record(vals, "val/a/top1", "min", "run")[0]["epoch"] == 0
    assert R.select_record(vals, None, "max", "run") == (vals[-1], "val epoch 3 (last; no checkpoint.monitor)")
    summary = [rec("val", [], epoch=e, summary={"hmdb51/hm": v}) for e, v in ((0, 0.3), (1, 0.2))]
    assert R.select_record(summary, "val/hmdb51/hm", "max", "run")[0]["epoch"] == 0
    tests = [*vals, rec("test", [s("a", 0.1)]), rec("test", [s("a", 0.2)])]
    assert R.select_record(tests, "val/a/top1", "max", "run")[0]["sets"][0]["top1"] == 0.2
    # a resumed run that validated epoch 1 again: the later record counts
    resumed = [*vals, rec("val", [s("a", 0.1)], epoch=1)]
    assert R.select_record(resumed, "val/a/top1", "max", "run")[0]["epoch"] == 2
    with pytest.raises(R.ReportError, match=r"run: the monitored metric 'val/top1' .*'val/a/top1'"):
        R.select_record(vals, "val/top1", "max", "run")


def test_monitor_from_config_options_or_callbacks():
    assert R.monitored_metric({"checkpoint": {"monitor": "val/x/top1", "mode": "min"}}) == ("val/x/top1", "min")
    cb = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"monitor": "val/y/top1"}}
    assert R.monitored_metric({"trainer": {"callbacks": [cb]}}) == ("val/y/top1", "max")
    assert R.monitored_metric({}) == (None, "max")


def test_records_reader_ignores_only_a_torn_last_line(tmp_path):
    R.append_eval_record(tmp_path, rec("val", [s("a", 0.5)]))
    with open(tmp_path / R.EVAL_RESULTS_FILE, "a") as f:
        f.write('{"stage": "val", "ep')  # killed while writing
    assert len(R.read_eval_records(tmp_path)) == 1
    with open(tmp_path / R.EVAL_RESULTS_FILE, "a") as f:
        f.write("\n" + json.dumps(rec("val", [s("a", 0.6)])) + "\n")
    with pytest.raises(ValueError, match=r"eval_results.jsonl:2: not a JSON record"):
        R.read_eval_records(tmp_path)


# ------------------------------------------------------------------------------------- the command
def test_report_command_writes_markdown_csv_and_plot(tmp_path, capsys):
    runs = tmp_path / "runs"
    few_shot_runs(runs / "few")
    b2n_runs(runs / "b2n")
    zero_shot_runs(runs / "zs")
    out = tmp_path / "report"
    assert report_main([str(runs), "-o", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert capsys.readouterr().out.strip() == text.strip()
    for title in ("## Few-shot top-1 (%)", "## Few-shot runs", "## Base-to-novel top-1 (%)", "## Zero-shot top-1"):
        assert title in text
    assert f"| {runs / 'few' / 'fs_hmdb_k2'} | hmdb51 | 2 |" in text  # rows name their run folders
    assert (out / "few_shot.png").read_bytes()[:8] == PNG_SIGNATURE
    with open(out / "few_shot.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0] == {"benchmark": "hmdb51", "K=2": "46.0000", "K=4": "56.0000", "mean over K": "51.0000"}
    with open(out / "zero_shot.csv") as f:
        zs = list(csv.DictReader(f))
    assert zs[0]["hmdb51 mean"] == "52.0000" and zs[0]["hmdb51 std"] == "1.6330" and zs[0]["hmdb51 splits"] == "3"
    assert sorted(p.name for p in out.iterdir()) == [
        "base_to_novel.csv", "few_shot.csv", "few_shot.png", "few_shot_runs.csv", "report.md", "zero_shot.csv"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such run folder"),
        (lambda p: p.mkdir(), "no eval_results.jsonl and no wise_sweep_"),
        (lambda p: write_run(p, [rec("test", [s("a", 0.5), s("b", 0.5)], protocol="few_shot", benchmark="x",
                                     shot=2)]), "a few-shot record needs one evaluation set"),
        (lambda p: write_run(p, [rec("test", [s("a", 0.5)], protocol="few_shot", benchmark="x")]), "no meta.shot"),
        (lambda p: write_run(p, [rec("test", [s("a", 0.5)], protocol="fewshot")]), "unknown meta.protocol"),
        (lambda p: write_run(p, [rec("test", [s("a", float("nan"))], protocol="few_shot", benchmark="x", shot=2)]),
         "evaluation set 'a' has no top-1"),
        (lambda p: write_run(p, [rec("val", [s("a", 0.5)], protocol="few_shot")], monitor="val/top1"),
         "monitored metric 'val/top1'"),
        (lambda p: write_run(p, [rec("test", [s("x/base", 0.5, "x", "base")], protocol="base_to_novel")]),
         "base set for x but no novel set"),
    ],
)
def test_bad_runs_are_named(tmp_path, capsys, make, message):
    run = tmp_path / "bad_run"
    make(run)
    assert report_main([str(run), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad_run" in err
