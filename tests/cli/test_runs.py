"""Run folders and ``--ckpt_path``: ``last`` stays within this run and skips broken files; a resumed run logs
into its own folder; remote and planted-payload checkpoints never run code."""

from __future__ import annotations

import csv
import functools
import http.server
import logging
import os
import pathlib
import re
import threading
import time
from pathlib import Path

import pytest
import torch

from run_helpers import demo_args
from tc_clip.cli import main
from tc_clip.cli.runs import (
    ContinuingCSVLogger,
    find_last_checkpoint,
    resolve_ckpt_path,
    resume_point,
    validate_checkpoint,
)
from tc_clip.model import CheckpointError


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo_cache")


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
    with pytest.warns(UserWarning, match=f"skipping {newer}: truncated"):
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
        assert resolve_ckpt_path("last", "fit", root) is None  # fit starts a new run (never the damaged file)
    with pytest.raises(CheckpointError, match=f"cannot load {bad}: truncated or not a torch checkpoint"):
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
    with pytest.raises(SystemExit, match=f"cannot load {evil}: refused by torch's weights-only loader"):
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


# ------------------------------------------------------------- paths, kills and damage (issue 17: 1, 5, 6)


def test_local_paths_beginning_with_http_stay_local_files_for_lightning(tmp_path, monkeypatch):
    from lightning.fabric.utilities.cloud_io import _load

    monkeypatch.chdir(tmp_path)
    _ckpt(Path("http_runs/last.ckpt"), 3, time.time())
    _ckpt(Path("httproot/version_0/checkpoints/last.ckpt"), 5, time.time())

    def downloader(*args, **kwargs):
        raise AssertionError(f"torch hub's downloader called with {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", downloader)
    for given, root, step in (("http_runs/last.ckpt", "runs", 3), ("last", "httproot", 5)):
        resolved = resolve_ckpt_path(given, "fit", root)
        assert os.path.isabs(resolved)
        assert _load(resolved, map_location="cpu", weights_only=True)["global_step"] == step  # Lightning's reader
    with pytest.raises(CheckpointError, match="remote http"):  # remote by fsspec, a URL to Lightning
        resolve_ckpt_path("httpx://host/last.ckpt", "fit", "runs")


class Killed(BaseException):
    """A simulated SIGKILL: nothing after it runs."""


def _die_writing_into(folder: Path, monkeypatch, after: int = 1000) -> None:
    """The next file opened for writing inside ``folder`` dies after ``after`` bytes."""
    import builtins

    real_open = builtins.open

    class Dying:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            room = after - self.n
            if len(data) > room:
                self.f.write(bytes(data)[:room])
                self.f.flush()
                raise Killed
            self.n += len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def dying_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and "w" in mode and Path(file).parent == folder:
            monkeypatch.setattr(builtins, "open", real_open)
            return Dying(f)
        return f

    monkeypatch.setattr(builtins, "open", dying_open)


def test_kill_while_last_ckpt_is_written_keeps_the_previous_one(cache, tmp_path, monkeypatch):
    """``$TMPDIR`` on another filesystem (simulated: renames out of it fail with EXDEV, so a move copies),
    and the process dies in the middle of writing the checkpoint folder."""
    import errno
    import shutil
    import tempfile

    from tc_clip.cli.app import build_cli

    other_fs = tmp_path / "other_fs"
    other_fs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(other_fs))
    real_rename = os.rename

    def rename(src, dst, *args, **kwargs):
        if str(src).startswith(str(other_fs)):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(shutil, "_USE_CP_SENDFILE", False)
    root = tmp_path / "runs"
    io = build_cli(demo_args(cache, root), run=False).trainer.strategy.checkpoint_io
    folder = root / "version_0/checkpoints"
    state = {"state_dict": {"w": torch.arange(100_000.0)}, "global_step": 11}
    io.save_checkpoint(state, folder / "last.ckpt")
    _die_writing_into(folder, monkeypatch)
    with pytest.raises((Killed, RuntimeError)):  # (torch reports a death inside its writer as RuntimeError)
        io.save_checkpoint({**state, "global_step": 12}, folder / "last.ckpt")
    found = resolve_ckpt_path("last", "fit", root)
    assert found == str(folder / "last.ckpt")
    assert torch.load(found, weights_only=True)["global_step"] == 11
    assert not list(other_fs.iterdir())


def test_damaged_last_ckpt_falls_back_to_the_previous_one(tmp_path):
    folder = tmp_path / "runs/version_0/checkpoints"
    folder.mkdir(parents=True)
    now = time.time()
    for name, step, mtime in (("last-prev.ckpt", 1, now - 10), ("last.ckpt", 2, now)):
        torch.save({"state_dict": {"w": torch.full((100_000,), float(step))}, "global_step": step}, folder / name)
        os.utime(folder / name, (mtime, mtime))
    last = folder / "last.ckpt"
    data = bytearray(last.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 4096] = bytes(4096)  # 4 KiB zeroed inside the tensor data
    last.write_bytes(bytes(data))
    os.utime(last, (now, now))
    with pytest.raises(CheckpointError, match="damaged: the CRC"):
        validate_checkpoint(last)
    with pytest.warns(UserWarning, match="skipping .*last.ckpt: damaged"):
        assert find_last_checkpoint(tmp_path / "runs") == str(folder / "last-prev.ckpt")


# --------------------------------------------------- a run's own folder and checkpoints (issue 17: 7, 9, 10)


@pytest.mark.slow
def test_resume_keeps_to_its_run_folder_and_settings_and_sums_up_the_whole_run(cache, tmp_path, capsys):
    from run_helpers import Killed

    root = tmp_path / "runs"
    base = ["fit", *demo_args(cache, root, "--trainer.max_epochs", "1", "--model.lr", "1e-9", "--model.lr_min", "0")]
    # (lr ~ 0: equal scores, so the best epoch stays 0)
    for _ in range(2):  # killed before the first checkpoint, twice: one folder, no checkpoint
        with pytest.raises(Killed):
            main([*base, "--ckpt_path", "last", "--trainer.callbacks+=run_helpers.DieAt",
                  "--trainer.callbacks.global_step=0"])
    assert sorted(p.name for p in root.iterdir()) == ["version_0"]
    capsys.readouterr()
    assert main([*base, "--ckpt_path", "last"]) == 0
    decoded = re.search(r"training clips decoded by: (.*)", capsys.readouterr().out).group(1)
    twice = ", ".join(f"{name} {2 * int(n)}" for name, n in (part.split() for part in decoded.split(", ")))
    assert main([*base, "--ckpt_path", "last", "--trainer.max_epochs", "2"]) == 0  # resumed: epoch 1
    out = capsys.readouterr().out
    folder = root / "version_0/checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["version_0"]
    assert {"last.ckpt", "last-prev.ckpt", "best.ckpt"} <= {p.name for p in folder.iterdir()}
    best_epoch = torch.load(folder / "best.ckpt", weights_only=True, mmap=True)["epoch"]
    assert best_epoch == 0 and f"at epoch {best_epoch}\n" in out
    assert f"training clips decoded by: {twice}\n" in out  # both epochs
    # changed settings are refused by name, for 'last' and for an explicit path
    with pytest.raises(SystemExit, match=r"tc-clip: error: .*another run.*seed_everything \(0 -> 1\)"):
        main([*base, "--ckpt_path", "last", "--seed_everything", "1"])
    with pytest.raises(SystemExit, match=r"data.init_args.batch_size \(4 -> 2\).*--init_from"):
        main([*base, "--ckpt_path", str(folder / "last.ckpt"), "--data.batch_size", "2"])
    # a fine-tune from those weights: a new run of its own
    assert main([*base, "--init_from", str(folder / "last.ckpt"), "--data.batch_size", "2"]) == 0
    new = torch.load(root / "version_1/checkpoints/last.ckpt", weights_only=True, mmap=True)
    assert new["epoch"] == 0 and new["tc_clip_run"]["keys"]["data.init_args.batch_size"] == "2"


def test_fingerprint_keeps_what_defines_a_run_and_refuses_another_global_batch(tmp_path):
    from types import SimpleNamespace

    from tc_clip.callbacks.run_fingerprint import RunFingerprint, RunMismatchError
    from tc_clip.cli.fingerprint import config_keys, differences

    lst = tmp_path / "train.txt"
    lst.write_text("a.mp4 0\n")
    cfg = {"seed_everything": 0, "ckpt_path": "x.ckpt", "checkpoint": {"monitor": "m"},
           "trainer": {"devices": 2, "max_epochs": 3, "gradient_clip_val": 1.0},
           "data": {"init_args": {"train_list": str(lst), "root": str(tmp_path), "num_workers": 8, "batch_size": 4}}}
    keys = config_keys(cfg)
    assert sorted(keys) == ["data.init_args.batch_size", "data.init_args.train_list", "seed_everything",
                            "trainer.gradient_clip_val"]
    moved = tmp_path / "moved.txt"
    moved.write_text(lst.read_text())
    assert config_keys({**cfg, "data": {"init_args": {**cfg["data"]["init_args"], "train_list": str(moved)}}}) == keys
    lst.write_text("b.mp4 0\n")  # the same path, other content: another run
    assert [d.split(" ")[0] for d in differences(config_keys(cfg), keys)] == ["data.init_args.train_list"]
    callback = RunFingerprint({**keys, "global_batch": "16"})
    with pytest.raises(RunMismatchError, match=r"global_batch \(32 -> 16\)"):
        callback.on_load_checkpoint(SimpleNamespace(ckpt_path="c.ckpt"), None,
                                    {"tc_clip_run": {"keys": {**keys, "global_batch": "32"}}})
