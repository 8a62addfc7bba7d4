"""``tc-clip test`` / ``predict --model.model_folder DIR`` (issue 18): the model of an exported folder, with no
``--ckpt_path``; its scores are those of the folder's model run another way, and another folder is another
prediction (its own rows, its own run keys)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from run_helpers import demo_args
from tc_clip import TCCLIP, TCCLIPConfig, inference
from tc_clip.cli import main
from tc_clip.cli.fingerprint import config_keys
from tc_clip.data import SyntheticVideoDataModule, synthetic
from tc_clip.lightning import TCCLIPModule
from tc_clip.lightning.evaluation import evaluate
from tc_clip.results.records import read_eval_records

NAMES = synthetic.class_names(3)
DEMO_SWITCHES = dict(num_frames=8, num_context_tokens=16, merge_step=40)  # configs/demo.yaml's


def folder_model(path: Path, seed: int, **switches) -> Path:
    torch.manual_seed(seed)
    model = TCCLIP.from_clip("tiny", class_names=NAMES, config=TCCLIPConfig(**{**DEMO_SWITCHES, **switches}))
    return model.save_pretrained(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("folders")
    return {"cache": tmp / "cache", "a": folder_model(tmp / "a", 0), "b": folder_model(tmp / "b", 1)}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_test_and_predict_take_a_model_folder(folders, tmp_path):
    cache = folders["cache"]
    root = tmp_path / "test"
    assert main(["test", *demo_args(cache, root), "--model.model_folder", str(folders["a"])]) == 0
    (record,) = read_eval_records(root / "version_0")
    dm = SyntheticVideoDataModule(cache_dir=str(cache), num_classes=3, videos_per_class=4, val_per_class=1,
                                  num_frames=8, input_size=64, batch_size=4, num_workers=0, val_views=1)
    dm.prepare_data()
    dm.setup("test")
    (want,) = evaluate(TCCLIP.from_pretrained(folders["a"]), dm.test_dataloader(), dm.eval_sets("test"))
    (got,) = record["sets"]
    assert (got["top1"], got["top5"], got["videos"]) == (want.top1, want.top5, want.videos) and want.videos == 3

    videos = next(p for p in cache.iterdir() if (p / "labels.csv").is_file()) / "videos"
    pred_root = tmp_path / "pred"
    args = ["predict", *demo_args(cache, pred_root, "--data.predict_list", str(videos), "--model.predict_top_k", "3")]
    assert main([*args, "--model.model_folder", str(folders["a"])]) == 0
    rows = _rows(pred_root / "version_0/predictions.csv")
    assert len(rows) == 15
    model = TCCLIP.from_pretrained(folders["a"])
    for row in rows[:4]:
        clip, _ = inference.read_clip(row["path"], num_frames=8, size=64)
        want = inference.predict(model, clip[0], NAMES, top_k=3)
        assert [row[f"pred_{i}"] for i in (1, 2, 3)] == [n for n, _ in want]
        assert [float(row[f"score_{i}"]) for i in (1, 2, 3)] == pytest.approx([s for _, s in want], abs=1e-5)

    # another folder: another prediction, in a folder of its own; the first one's rows are left as they were
    assert main([*args, "--model.model_folder", str(folders["b"])]) == 0
    assert _rows(pred_root / "version_0/predictions.csv") == rows
    other = _rows(pred_root / "version_1/predictions.csv")
    assert len(other) == 15 and [r["score_1"] for r in other] != [r["score_1"] for r in rows]


def test_run_keys_tell_two_folders_apart(folders):
    keys = {name: config_keys({"model": {"model_folder": str(folders[name])}}, "predict") for name in "ab"}
    assert keys["a"]["model.model_folder"] != keys["b"]["model.model_folder"]
    assert keys["a"]["model.model_folder"].startswith('["sha256:')


def test_module_takes_the_folder_model_and_its_hparams_load_again(folders):
    module = TCCLIPModule(model_folder=str(folders["a"]), model_name="ViT-B-16", config=TCCLIPConfig(num_frames=8))
    model = TCCLIP.from_pretrained(folders["a"])
    assert module.config == model.config and module.model.class_names == NAMES
    assert module.hparams["config"] == model.config.to_dict()
    again = TCCLIPModule(**module.hparams)  # what load_from_checkpoint does with the saved hyper-parameters
    assert again.config == model.config
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in again.model.state_dict().items())


def test_frame_count_follows_the_data_unless_the_positional_table_is_joint(folders, tmp_path):
    video = torch.randn(1, 4, 3, 64, 64)
    module = TCCLIPModule(model_folder=str(folders["a"]), config=TCCLIPConfig(num_frames=4))
    assert module.config.num_frames == 4 and module.model.config.num_frames == 4
    module.model.eval()
    with torch.no_grad():  # the weights do not depend on T: the same logits as the folder's model
        assert torch.allclose(module(video), TCCLIP.from_pretrained(folders["a"]).eval()(video), atol=1e-6)
    joint = folder_model(tmp_path / "joint", 0, positional_embedding="joint")
    with pytest.raises(ValueError, match=r"joint positional table of 8 frames.*--data.num_frames 8"):
        TCCLIPModule(model_folder=str(joint), config=TCCLIPConfig(num_frames=4))
    assert TCCLIPModule(model_folder=str(joint), config=TCCLIPConfig(num_frames=8)).config.num_frames == 8


def test_weights_or_switches_given_beside_the_folder_are_refused_by_name(folders):
    with pytest.raises(ValueError, match=r"drop model\.pretrained and model\.release_checkpoint"):
        TCCLIPModule(model_folder=str(folders["a"]), pretrained="clip.pt", release_checkpoint="r.pth")
    with pytest.raises(ValueError, match=r"drop model\.pretrained$"):
        TCCLIPModule(model_folder=str(folders["a"]), pretrained="clip.pt")
    # a switch set to neither its default nor the folder's value contradicts the folder (demo.yaml's match it)
    with pytest.raises(ValueError, match=r"model\.config\.merge_step: 10 contradicts the folder's 40"):
        TCCLIPModule(model_folder=str(folders["a"]), config=TCCLIPConfig(merge_step=10, num_context_tokens=16))


def test_the_cli_refuses_weights_beside_a_folder_in_one_line(folders, tmp_path, capsys):
    code = main(["test", *demo_args(folders["cache"], tmp_path), "--model.model_folder", str(folders["a"]),
                 "--model.pretrained", "clip.pt"])
    err = capsys.readouterr()
    assert code == 1 and f"tc-clip: error: model_folder '{folders['a']}' holds the weights: drop model.pretrained" in (
        err.out + err.err)
