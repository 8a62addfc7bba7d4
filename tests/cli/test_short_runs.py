"""Short runs (issue 20, point 5): a training limit too small for one global batch names the limit and the
option to lower; ``--trainer.limit_*_batches 1`` (read as 100 %) is warned about loudly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tc_clip.cli import build_cli, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def train_data(tmp_path) -> list[str]:
    """8 training entries (empty files: the run stops before its first batch reads one)."""
    (tmp_path / "labels.csv").write_text("id,name\n0,run\n1,jump\n")
    (tmp_path / "train.txt").write_text("".join(f"v{i}.avi {i % 2}\n" for i in range(8)))
    for i in range(8):
        (tmp_path / f"v{i}.avi").touch()
    return [
        "fit", "--data", "tc_clip.data.VideoDataModule", "--data.root", str(tmp_path), "--data.labels",
        str(tmp_path / "labels.csv"), "--data.train_list", str(tmp_path / "train.txt"), "--data.batch_size", "1",
        "--data.input_size", "64", "--data.num_frames", "8", "--data.num_workers", "0", "--model.model_name",
        "tiny", "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "runs"),
    ]


def test_a_limit_below_one_global_batch_names_the_limit_and_the_global_batch(train_data, capsys):
    assert main([*train_data, "--global_batch_size", "4", "--trainer.limit_train_batches", "2"]) == 1
    err = capsys.readouterr().err
    assert "--trainer.limit_train_batches 2 leaves 2 training batch(es)" in err
    assert "raise the limit to at least 4" in err and "--global_batch_size" in err and "Traceback" not in err
    assert main([*train_data, "--global_batch_size", "16"]) == 1  # no limit: the set is short
    err = capsys.readouterr().err
    assert "the training set gives 8 batches per device" in err and "lower --global_batch_size" in err


@pytest.mark.parametrize("value", ["1", "1.0"])
def test_a_limit_of_one_is_warned_to_mean_every_batch(value, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["tc-clip"])
    build_cli(["--config", str(REPO / "configs/demo.yaml"), "--data.cache_dir", str(tmp_path),
               "--trainer.limit_test_batches", value, "--trainer.limit_val_batches", "2",
               "--trainer.default_root_dir", str(tmp_path)], run=False)
    err = capsys.readouterr().err
    assert "--trainer.limit_test_batches 1.0 means EVERY batch" in err and "fast_dev_run" in err
    assert "limit_val_batches" not in err and "limit_train_batches" not in err


def test_num_threads_sets_torchs_threads(tmp_path, monkeypatch):
    """``num_threads`` (the demo sets 1: a busy machine made two waiting threads 6x slower)."""
    import torch

    monkeypatch.setattr(sys, "argv", ["tc-clip"])
    build_cli(["--config", str(REPO / "configs/demo.yaml"), "--data.cache_dir", str(tmp_path), "--num_threads", "2",
               "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert torch.get_num_threads() == 2  # the suite's conftest restores its own setting afterwards
