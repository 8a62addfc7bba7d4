"""Runs that never go silently wrong: a NaN/inf loss stops with the step and nothing non-finite is saved;
``--ckpt_path last`` stays within this run and skips broken files; remote and planted-payload checkpoints
never run code; ``predict`` keeps finished rows when killed and a rerun skips them."""

from __future__ import annotations

import csv
import functools
import http.server
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from tc_clip.cli import build_cli, main
from tc_clip.lightning.checkpointing import (
    CheckpointError,
    ContinuingCSVLogger,
    find_last_checkpoint,
    resolve_ckpt_path,
    resume_point,
    validate_checkpoint,
)
from tc_clip.lightning.guards import NonFiniteError, NonFiniteGuard

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "configs" / "demo.yaml")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("trust_cache")


def demo_args(cache: Path, root: Path, *extra: str) -> list[str]:
    return [
        "--config", DEMO,
        "--data.cache_dir", str(cache), "--data.num_classes", "3", "--data.videos_per_class", "4",
        "--data.val_per_class", "1", "--data.batch_size", "4", "--data.num_workers", "0",
        "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root), *extra,
    ]


# ------------------------------------------------------------------------------------------- NaN


def test_nan_loss_stops_with_the_step_and_saves_nothing_non_finite(cache, tmp_path, capsys):
    root = tmp_path / "runs"
    args = ["fit", *demo_args(cache, root, "--model.lr", "1e12", "--model.warmup_epochs", "0",
                              "--last_every_n_steps", "1")]
    assert main(args) == 1  # the console gets one clear line, no traceback
    err = capsys.readouterr().err
    assert re.search(r"tc-clip: error: the training loss is (nan|inf) at global step \d+ \(epoch \d+, batch \d+\)", err)
    assert "lr" in err and "Traceback" not in err
    with pytest.raises(NonFiniteError, match=r"global step \d+"):  # from Python, the exception itself
        build_cli(args)
    saved = list(root.rglob("*.ckpt"))
    for path in saved:  # every checkpoint written before the stop holds finite weights
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()), path


def test_guard_refuses_to_save_non_finite_weights():
    class Trainer:
        global_step, current_epoch = 7, 1

        class fit_loop:  # noqa: N801
            class epoch_loop:  # noqa: N801
                class batch_progress:  # noqa: N801
                    class current:  # noqa: N801
                        ready = 3

    guard = NonFiniteGuard()
    guard.on_save_checkpoint(Trainer(), None, {"state_dict": {"w": torch.ones(2), "n": torch.arange(3)}})
    with pytest.raises(NonFiniteError, match=r"non-finite weights at global step 7 .*: w"):
        guard.on_save_checkpoint(Trainer(), None, {"state_dict": {"w": torch.tensor([1.0, float("nan")])}})
    with pytest.raises(NonFiniteError, match="loss is inf at global step 7"):
        guard.on_before_backward(Trainer(), None, torch.tensor(float("inf")))


# --------------------------------------------------------------------------- finding the last ckpt


def _ckpt(path: Path, step: int, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "global_step": step}, path)
    os.utime(path, (mtime, mtime))
    return path


def test_last_stays_in_this_run_and_skips_truncated_files(tmp_path, caplog):
    root = tmp_path / "runs/exp_a"
    now = time.time()
    mine = _ckpt(root / "version_0/checkpoints/last.ckpt", 1, now - 30)
    newer = _ckpt(root / "version_1/checkpoints/last.ckpt", 2, now - 20)
    # another experiment nested under this root, and a sibling one: both newer, never chosen
    _ckpt(root / "sweep/version_0/checkpoints/last.ckpt", 9, now)
    _ckpt(tmp_path / "runs/exp_b/version_0/checkpoints/last.ckpt", 9, now)
    with caplog.at_level(logging.INFO):
        assert find_last_checkpoint(root) == str(newer)
    assert f"resuming from {newer}" in caplog.text

    # the newest file is truncated (a kill during the save): skipped with its name, the older one is used
    data = newer.read_bytes()
    newer.write_bytes(data[: len(data) // 2])
    os.utime(newer, (now - 10, now - 10))
    with pytest.warns(UserWarning, match=f"skipping checkpoint {newer} is truncated"):
        assert find_last_checkpoint(root) == str(mine)
    # a checkpoint folder given explicitly is the only place searched
    assert find_last_checkpoint(root, dirpath=tmp_path / "runs/exp_b/version_0/checkpoints").endswith(
        "exp_b/version_0/checkpoints/last.ckpt"
    )
    assert find_last_checkpoint(tmp_path / "empty") is None


def test_ckpt_path_last_without_a_readable_file(tmp_path):
    root = tmp_path / "runs"
    bad = root / "version_0/checkpoints/last.ckpt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="skipping"), pytest.raises(CheckpointError, match="no readable last"):
        resolve_ckpt_path("last", "validate", root)
    with pytest.warns(UserWarning, match="skipping"):
        assert resolve_ckpt_path("last", "fit", root) == "last"  # fit starts from scratch (Lightning warns)
    with pytest.raises(CheckpointError, match=f"checkpoint {bad} is truncated or not a torch checkpoint"):
        resolve_ckpt_path(str(bad), "validate", root)
    with pytest.raises(CheckpointError, match="no such file"):
        resolve_ckpt_path(str(root / "missing.ckpt"), "test", root)


def test_resume_point_of_a_checkpoint(tmp_path):
    ckpt = _ckpt(tmp_path / "runs/version_3/checkpoints/last.ckpt", 7, time.time())
    assert resume_point(str(ckpt), tmp_path / "runs") == (3, 7)
    assert resume_point(str(ckpt), tmp_path / "elsewhere") is None
    assert resume_point(None, tmp_path / "runs") is None


def test_csv_log_of_a_resumed_run_keeps_the_rows_before_the_checkpoint(tmp_path):
    folder = tmp_path / "version_0"
    folder.mkdir()
    (folder / "metrics.csv").write_text("epoch,step,train/loss\n0,3,1.5\n0,4,1.2\n0,5,1.1\n")
    logger = ContinuingCSVLogger(save_dir=tmp_path, name="", version=0, resume_step=5)
    logger.log_metrics({"train/loss": 1.0, "val/top1": 0.5}, step=5)
    logger.save()
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    assert [(r["step"], r["train/loss"], r["val/top1"]) for r in rows] == [
        ("3", "1.5", ""), ("4", "1.2", ""), ("5", "1.0", "0.5")
    ]


# ------------------------------------------------------------------------ code in checkpoint files


class Payload:
    """Unpickling this touches ``marker``: a stand-in for arbitrary code in a checkpoint file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _planted(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 0, "extra": Payload(marker)}, path)
    return path


def test_local_planted_payload_never_runs(cache, tmp_path):
    marker = tmp_path / "pwned"
    evil = _planted(tmp_path / "evil.ckpt", marker)
    with pytest.raises(SystemExit, match=f"checkpoint {evil} cannot be loaded safely"):
        main(["validate", *demo_args(cache, tmp_path / "runs"), "--ckpt_path", str(evil)])
    assert not marker.exists()
    # Lightning 2.6 itself reads local paths with weights_only=True (the default of torch.load)
    from lightning.fabric.utilities.cloud_io import _load

    with pytest.raises(Exception, match="Weights only load failed"):
        _load(str(evil), map_location="cpu")
    assert not marker.exists()
    with pytest.raises(SystemExit, match="--weights_only false is refused"):
        main(["validate", *demo_args(cache, tmp_path / "runs"), "--ckpt_path", str(evil), "--weights_only", "false"])
    assert not marker.exists()


def test_remote_checkpoint_url_is_refused_and_its_payload_never_runs(cache, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    served = tmp_path / "served"
    served.mkdir()
    _planted(served / "evil.ckpt", marker)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # where a download would land
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/evil.ckpt"
    try:
        with pytest.raises(SystemExit, match="remote http\\(s\\) checkpoints are refused"):
            main(["validate", *demo_args(cache, tmp_path / "runs"), "--ckpt_path", url])
    finally:
        server.shutdown()
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        resolve_ckpt_path("https://example.org/x.ckpt", "fit", tmp_path)


def test_validate_checkpoint_accepts_a_real_lightning_checkpoint(tmp_path):
    path = _ckpt(tmp_path / "ok.ckpt", 1, time.time())
    validate_checkpoint(path)
    torch.save({"model": {}}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        validate_checkpoint(tmp_path / "plain.pth")


# ------------------------------------------------------------------------------------- predict


class KillAtPredictBatch(L.Callback):
    """Test helper: SIGKILLs its own process when ``predict`` reaches batch ``batch`` (the earlier
    batches are finished)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class CountPredicted(L.Callback):
    """Test helper: records the dataset indices that ``predict`` computes."""

    seen: list[int] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        CountPredicted.seen += batch["index"].tolist()


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    return subprocess.run([sys.executable, "-m", "tc_clip.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_killed_predict_keeps_its_rows_and_a_rerun_skips_them(cache, tmp_path):
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
    killed = _run_cli(args + ["--trainer.callbacks+=test_trust.KillAtPredictBatch",
                              "--trainer.callbacks.batch=3"], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    out = pred_root / "version_0/predictions.csv"
    partial = _csv_rows(out)  # the 3 finished batches are in the file already
    assert len(partial) == 9 and (pred_root / "version_0/predictions.csv.progress.jsonl").is_file()

    # rerun in-process: continues the unfinished file, computes only the 6 videos left
    CountPredicted.seen = []
    assert main(args + ["--trainer.callbacks+=test_trust.CountPredicted"]) == 0
    done = {int(r["index"]) for r in partial}
    assert sorted(CountPredicted.seen) == sorted(set(range(n_videos)) - done)
    rows = _csv_rows(out)
    assert [int(r["index"]) for r in rows] == list(range(n_videos))
    assert len({r["path"] for r in rows}) == n_videos
    assert {r["path"]: r["score_1"] for r in rows}.items() >= {r["path"]: r["score_1"] for r in partial}.items()
    assert not (pred_root / "version_0/predictions.csv.progress.jsonl").exists()
    assert not list(pred_root.glob("version_1/predictions.csv"))

    # a finished file is not continued: a new run predicts every video again, in its own folder
    CountPredicted.seen = []
    assert main(args + ["--trainer.callbacks+=test_trust.CountPredicted"]) == 0
    assert len(CountPredicted.seen) == n_videos
    assert _csv_rows(pred_root / "version_2/predictions.csv") == rows


def test_progress_of_another_prediction_is_not_reused(tmp_path):
    from tc_clip.callbacks.predict_writer import read_progress

    progress = tmp_path / "p.csv.progress.jsonl"
    progress.write_text('{"fingerprint": "a"}\n{"index": 0}\n{"index": 1}\n{"ind')  # cut by a kill
    assert read_progress(progress, "a") == [{"index": 0}, {"index": 1}]
    assert read_progress(progress, "b") == []
