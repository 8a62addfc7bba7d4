"""Errors a user can cause end as one ``tc-clip: error:`` line and exit status 1, not a traceback (issue 20,
point 4); ``--traceback`` / ``TC_CLIP_TRACEBACK=1`` show the stack, and bugs keep theirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tc_clip.cli import main
from tc_clip.cli.errors import user_message
from tc_clip.data.errors import DataError, SplitFilesNotFoundError
from tc_clip.errors import ConfigError, UserError
from tc_clip.model import CheckpointError
from tc_clip.model.factory import CLIPWeightsError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data(tmp_path) -> Path:
    """A label file and lists of two (absent) videos: enough for every error below to be reached."""
    (tmp_path / "labels.csv").write_text("id,name\n0,run\n1,jump\n")
    (tmp_path / "ok.txt").write_text("a.avi 0\nb.avi 1\n")
    (tmp_path / "bad_label.txt").write_text("a.avi 0\nb.avi 7\n")
    (tmp_path / "bad.pth").write_text("not a checkpoint")
    return tmp_path


def _args(d: Path, *extra: str) -> list[str]:
    return [
        "test", "--data", "tc_clip.data.VideoDataModule", "--data.root", str(d), "--data.labels",
        str(d / "labels.csv"), "--data.test_list", str(d / "ok.txt"), "--data.input_size", "64",
        "--data.num_frames", "8", "--data.num_workers", "0", "--model.model_name", "tiny",
        "--trainer.accelerator", "cpu", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(d / "runs"), *extra,
    ]


CASES = {  # what the user got wrong -> (extra options, words the one line must hold)
    "missing list": (["--data.test_list", "{d}/nothere.txt"], ["nothere.txt", "no such file"]),
    "bad label index": (["--data.test_list", "{d}/bad_label.txt"], ["bad_label.txt:2", "label 7"]),
    "wise-ft without CLIP": (["--config", str(REPO / "configs/zero_shot_k400_wise.yaml")],
                             ["no CLIP weights", "clip_weights"]),
    "bad checkpoint": (["--model.release_checkpoint", "{d}/bad.pth"], ["bad.pth"]),
    "size the model cannot take": (["--data.input_size", "96"], ["data.input_size 96"]),
}


@pytest.mark.parametrize("case", CASES)
def test_user_errors_end_in_one_line(case, data, capsys):
    extra, words = CASES[case]
    assert main(_args(data, *[e.format(d=data) for e in extra])) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("tc-clip: error: "), err
    assert "Traceback" not in err
    assert all(w in lines[0] for w in words), lines[0]


def test_missing_official_split_files_end_in_one_line(tmp_path, capsys):
    args = ["test", "--config", str(REPO / "configs/zero_shot_eval_hmdb.yaml"), "--data.root", str(tmp_path),
            "--data.input_size", "64", "--data.num_frames", "8", "--model.model_name", "tiny",
            "--model.pretrained", "null", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path / "runs")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("tc-clip: error: ") == 1 and "testTrainMulti_7030_splits" in err
    assert "give the test lists" in err and "TrainerFn" not in err


def test_traceback_flag_and_environment_show_the_stack(data, monkeypatch):
    args = _args(data, "--data.test_list", str(data / "bad_label.txt"))
    with pytest.raises(ValueError, match="label 7"):
        main([*args, "--traceback"])
    monkeypatch.setenv("TC_CLIP_TRACEBACK", "1")
    with pytest.raises(ValueError, match="label 7"):
        main(args)


def test_only_user_errors_are_one_line():
    for cls in (CheckpointError, CLIPWeightsError, DataError, SplitFilesNotFoundError, ConfigError):
        assert issubclass(cls, UserError)
    assert issubclass(CheckpointError, ValueError) and issubclass(CLIPWeightsError, RuntimeError)
    assert user_message(DataError("x.txt:3: bad line")) == "x.txt:3: bad line"
    assert user_message(ValueError("raised outside the data layer")) is None  # a bug: keeps its traceback
    assert user_message(KeyError("k")) is None
    worker = ValueError(
        "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "/x/torch/utils/data/_utils/worker.py", line 349, in _worker_loop\n    data = fetch(index)\n'
        '  File "/x/src/tc_clip/data/annotations.py", line 58, in _problem\n    raise ValueError(msg)\n'
        "ValueError: /d/val.txt:2: label 7 out of range 0..1\n"
    )
    assert user_message(worker) == "/d/val.txt:2: label 7 out of range 0..1"
