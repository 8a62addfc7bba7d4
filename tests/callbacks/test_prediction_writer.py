"""``predict`` keeps finished rows when killed, and a rerun of the same prediction skips them
(PredictionWriter)."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest

from run_helpers import CountPredicted, demo_args, run_cli
from tc_clip.cli import main


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo_cache")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_killed_predict_keeps_its_rows_and_a_rerun_skips_them(cache, tmp_path, capsys):
    root = tmp_path / "runs"
    assert main(["fit", *demo_args(cache, root, "--trainer.max_epochs", "1",
                                   "--trainer.limit_train_batches", "1")]) == 0
    ckpt = root / "version_0/checkpoints/last.ckpt"
    videos = next(p for p in cache.iterdir() if (p / "labels.csv").is_file()) / "videos"
    n_videos = len([p for p in videos.rglob("*") if p.is_file()])
    assert n_videos == 12 + 3
    pred_root = tmp_path / "pred"
    args = ["predict", *demo_args(cache, pred_root, "--data.predict_list", str(videos),
                                  "--data.batch_size", "3", "--model.predict_top_k", "2"),
            "--ckpt_path", str(ckpt)]
    killed = run_cli(args + ["--trainer.callbacks+=run_helpers.KillAtPredictBatch",
                              "--trainer.callbacks.batch=3"], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    out = pred_root / "version_0/predictions.csv"
    partial = _csv_rows(out)  # the 3 finished batches are in the file already
    assert len(partial) == 9 and (pred_root / "version_0/predictions.csv.progress.jsonl").is_file()

    # another model (best.ckpt): every video again, in a folder of its own, nothing appended to those rows
    # (issue 17: 11)
    CountPredicted.seen = []
    other = [a if a != str(ckpt) else str(ckpt.with_name("best.ckpt")) for a in args]
    assert main(other + ["--trainer.callbacks+=run_helpers.CountPredicted"]) == 0
    assert len(CountPredicted.seen) == n_videos and _csv_rows(out) == partial
    assert len(_csv_rows(pred_root / "version_1/predictions.csv")) == n_videos

    # rerun in-process: continues the unfinished file, computes only the 6 videos left
    CountPredicted.seen = []
    assert main(args + ["--trainer.callbacks+=run_helpers.CountPredicted"]) == 0
    done = {int(r["index"]) for r in partial}
    assert sorted(CountPredicted.seen) == sorted(set(range(n_videos)) - done)
    rows = _csv_rows(out)
    assert [int(r["index"]) for r in rows] == list(range(n_videos))
    assert len({r["path"] for r in rows}) == n_videos
    assert {r["path"]: r["score_1"] for r in rows}.items() >= {r["path"]: r["score_1"] for r in partial}.items()
    assert not (pred_root / "version_0/predictions.csv.progress.jsonl").exists()
    assert sorted(p.name for p in pred_root.iterdir()) == ["version_0", "version_1"]

    # a finished prediction is complete: a rerun says where it is and computes nothing, in no new folder
    CountPredicted.seen = []
    assert main(args + ["--trainer.callbacks+=run_helpers.CountPredicted"]) == 0
    assert CountPredicted.seen == [] and _csv_rows(out) == rows
    assert f"complete already: {out}" in capsys.readouterr().out
    assert sorted(p.name for p in pred_root.iterdir()) == ["version_0", "version_1"]
    # --redo computes it again, in a new folder
    assert main(args + ["--redo", "true", "--trainer.callbacks+=run_helpers.CountPredicted"]) == 0
    assert len(CountPredicted.seen) == n_videos
    assert _csv_rows(pred_root / "version_2/predictions.csv") == rows
    assert f"written to {pred_root / 'version_2/predictions.csv'}" in capsys.readouterr().out


def test_prediction_fingerprint_covers_weights_vocabulary_and_data_options():
    """(issue 17: 11) what a rerun must share with the rows it continues."""
    from types import SimpleNamespace

    import torch

    from tc_clip.callbacks.prediction_writer import _fingerprint

    class Module(torch.nn.Module):
        def __init__(self, names):
            super().__init__()
            self.w, self.names, self.hparams = torch.nn.Parameter(torch.zeros(3)), names, {"predict_top_k": 2}

        def predict_class_names(self):
            return self.names

    def fp(names=("a", "b"), views=1, ckpt=None, weight=0.0):
        module = Module(list(names))
        module.w.data.fill_(weight)
        dm = SimpleNamespace(test_views=views, num_frames=8, input_size=64, num_workers=2)
        return _fingerprint(SimpleNamespace(ckpt_path=ckpt, datamodule=dm), module, None)

    base = fp()
    assert fp() == base
    assert len({base, fp(names=("a", "renamed")), fp(views=3), fp(ckpt="best.ckpt"), fp(weight=1.0)}) == 5
    dm_workers = fp()  # loader options are not part of it
    assert dm_workers == base


def test_progress_of_another_prediction_is_not_reused(tmp_path):
    from tc_clip.callbacks.prediction_writer import read_progress

    progress = tmp_path / "p.csv.progress.jsonl"
    progress.write_text('{"fingerprint": "a"}\n{"index": 0}\n{"index": 1}\n{"ind')  # cut by a kill
    assert read_progress(progress, "a") == [{"index": 0}, {"index": 1}]
    assert read_progress(progress, "b") == []
