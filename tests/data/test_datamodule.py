"""DataModules on real (synthetic) videos: batches, views, predict, bad videos, workers, check-data."""

import warnings
from pathlib import Path

import pytest
import torch

from data_helpers import make_synthetic
from tc_clip.cli import main
from tc_clip.data import BadVideoWarning, EvalSetInfo, SyntheticVideoDataModule, VideoDataModule
from tc_clip.data.check import check_data


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synth") / "ds")


def dm_for(synth, **kw):
    args = dict(
        train_list=synth.train_list,
        val_list=synth.val_list,
        labels=synth.labels,
        num_frames=4,
        input_size=32,
        batch_size=3,
        num_workers=0,
    )
    args.update(kw)
    return VideoDataModule(**args)


def test_train_and_eval_batches(synth):
    dm = dm_for(synth, test_views=2, test_crops=3)
    dm.setup("fit")
    b = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)  # colour half, as on the device
    assert b["video"].shape == (3, 4, 3, 32, 32) and b["video"].dtype == torch.float32
    assert b["label"].dtype == torch.long and b["index"].shape == (3,) and b["skipped"].tolist() == [0, 0, 0]
    v = next(iter(dm.val_dataloader()[0]))
    assert v["video"].shape == (3, 1, 4, 3, 32, 32)
    dm.setup("test")
    loaders = dm.test_dataloader()
    assert len(loaders) == len(dm.eval_sets("test")) == 1
    t = next(iter(loaders[0]))
    assert t["video"].shape == (3, 6, 4, 3, 32, 32)
    # evaluation is deterministic
    again = next(iter(dm.test_dataloader()[0]))
    assert torch.equal(t["video"], again["video"])


def test_predict_folder_without_labels(synth):
    dm = dm_for(synth, predict_list=str(Path(synth.root) / "videos"))
    dm.setup("predict")
    b = next(iter(dm.predict_dataloader()))
    assert b["label"].tolist() == [-1, -1, -1] and len(b["path"]) == 3 and b["video"].ndim == 6
    assert dm.eval_sets("predict") == [EvalSetInfo("predict", dm.train_class_names)]


def test_bad_videos_left_out_of_evaluation_replaced_in_training_or_strict(synth, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 50)
    lines = [f"{bad} 0", f"{tmp_path / 'missing.avi'} 1"]
    lines += Path(synth.val_list).read_text().splitlines()
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(lines) + "\n")
    dm = dm_for(synth, val_list=str(lst), train_list=str(lst), root=synth.root)
    dm.setup("fit")
    ds = dm.datasets("validate")[0]
    with pytest.warns(BadVideoWarning, match="bad.mp4 .left out of the evaluation"):
        item = ds[0]
    assert item["skipped"].item() == 1 and item["index"].item() == 0 and item["label"].item() == -1
    assert not item["video"].any() and item["video"].shape == ds[2]["video"].shape
    with warnings.catch_warnings():
        warnings.simplefilter("error", BadVideoWarning)
        again = ds[0]  # each file is named once
        good = ds[2]
    assert again["label"].item() == -1 and good["skipped"].item() == 0 and good["label"].item() == 0
    assert item["decoder"].item() == -1 and good["decoder"].item() >= 0  # nothing decoded the unreadable one
    with pytest.warns(BadVideoWarning, match="missing.avi"):
        batch = next(iter(dm.val_dataloader()[0]))
    assert batch["skipped"].tolist() == [1, 1, 0] and batch["label"].tolist()[:2] == [-1, -1]
    # training still replaces an unreadable video by another one
    train = dm.datasets("fit")[0]
    with pytest.warns(BadVideoWarning, match="replaced by another training video"):
        item = train[0]
    assert item["skipped"].item() >= 1 and item["label"].item() >= 0 and item["video"].any()
    strict = dm_for(synth, val_list=str(lst), root=synth.root, strict=True)
    strict.setup("validate")
    with pytest.raises(Exception, match="bad.mp4"):
        strict.datasets("validate")[0][0]


def test_two_workers_seeded(synth):
    def run():
        dm = dm_for(synth, num_workers=2, seed=3, persistent_workers=True)
        dm.setup("fit")
        loader = dm.train_dataloader()
        assert loader.num_workers == 2 and loader.persistent_workers
        return [(b["index"], dm.on_after_batch_transfer(b, 0)["video"]) for b in loader]

    a, b = run(), run()
    assert len(a) == 3
    for (ia, va), (ib, vb) in zip(a, b, strict=False):
        assert torch.equal(ia, ib) and torch.equal(va, vb)


def test_check_data_exit_codes(synth, tmp_path):
    good = dm_for(synth)
    report = check_data(good)
    assert report.ok and report.checked == 12
    cfg = tmp_path / "good.yaml"
    cfg.write_text(
        "data:\n  class_path: tc_clip.data.VideoDataModule\n  init_args:\n"
        f"    train_list: {synth.train_list}\n    val_list: {synth.val_list}\n    labels: {synth.labels}\n"
        "    num_frames: 8\n    num_workers: 0\n"
    )
    assert main(["check-data", "--config", str(cfg)]) == 0
    bad = tmp_path / "bad.txt"
    bad.write_text(Path(synth.val_list).read_text() + "videos/nope.mp4 0\nvideos/x.mp4 99\n")
    args = ["--data", "VideoDataModule", "--data.train_list", str(bad), "--data.labels", synth.labels,
            "--data.root", synth.root, "--data.num_workers", "0"]
    assert main(["check-data", *args]) == 1
    short = check_data(dm_for(synth, num_frames=32))
    assert len(short.too_short) == 12 and not short.ok
    rep = check_data(dm_for(synth, train_list=str(bad), root=synth.root), stages=("fit",))
    assert len(rep.label_problems) == 1 and "bad.txt:5: label 99" in rep.label_problems[0]
    assert [Path(p).name for p, _ in rep.missing] == ["nope.mp4"]


def test_synthetic_datamodule(tmp_path):
    dm = SyntheticVideoDataModule(
        cache_dir=str(tmp_path),
        num_classes=3,
        videos_per_class=2,
        val_per_class=1,
        video_frames=12,
        video_width=48,
        video_height=48,
        num_frames=4,
        input_size=32,
        batch_size=2,
        num_workers=0,
    )
    assert len(dm.train_class_names) == 3
    assert [s.name for s in dm.eval_sets("validate")] == ["synthetic/val"]
    dm.prepare_data()
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["video"].shape == (2, 4, 3, 32, 32)
    assert len(list(tmp_path.iterdir())) == 1  # one cache folder keyed by the parameters


def test_subclass_arguments_visible_to_the_cli(tmp_path):
    """The benchmark modules forward the shared arguments through ``**kwargs``: jsonargparse must still
    see every one with its type and default (and the subclass's own defaults), and no others."""
    from jsonargparse import ArgumentParser

    from tc_clip import data

    def cli_args(cls):
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "d")
        return vars(parser.get_defaults()["d"])

    base = cli_args(VideoDataModule)
    assert len(base) == 37 and base["flip"] is True and base["defer_novel"] is True and base["num_frames"] == 16
    extra = {"split": 1, "videos_dir": None, "splits_dir": None}
    for name, own in [
        ("HMDB51DataModule", {"root": "data/hmdb51", **extra}),
        ("UCF101DataModule", {"root": "data/ucf101", **extra}),
        ("SSv2DataModule", {"root": "data/ssv2", "videos_dir": None, "annotations_dir": None, "flip": False}),
        ("Kinetics400DataModule", {"root": "data/kinetics400", "videos_dir": None, "annotations_dir": None}),
        ("Kinetics600DataModule", {"root": "data/kinetics400", "videos_dir": None, "annotations_dir": None}),
    ]:
        assert cli_args(getattr(data, name)) == {**base, **own}, name
    synthetic = cli_args(SyntheticVideoDataModule)
    hidden = {"train_list", "val_list", "test_list", "labels", "val_labels", "test_labels", "llm_names"}
    hidden |= {"eval_llm_names", "root", "eval_group", "novel_list", "novel_labels"}
    assert not hidden & set(synthetic) and set(base) - hidden <= set(synthetic)
    assert [synthetic[k] for k in ("num_frames", "input_size", "num_workers", "test_views")] == [8, 64, 2, 1]
    assert synthetic["flip"] is True and synthetic["batch_size"] == 8 and synthetic["cache_dir"].endswith("synthetic")
    assert data.SSv2DataModule().flip is False and data.HMDB51DataModule().flip is True
    dm = SyntheticVideoDataModule(cache_dir=str(tmp_path))
    assert (dm.num_frames, dm.input_size, dm.num_workers, dm.test_views, dm.test_crops) == (8, 64, 2, 1, 1)
