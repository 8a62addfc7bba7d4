"""The paper's protocols with the public list files (SPEC 5b): '#' video names, K-shot lists used as they
are, the published base/novel split, zero-shot splits and suite, broken evaluation videos, describe()."""

import json
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn

from data_helpers import make_synthetic, touch, write_labels
from tc_clip.cli import main as cli_main
from tc_clip.data import (
    BadVideoWarning,
    EvalSetInfo,
    HMDB51DataModule,
    Kinetics600DataModule,
    UCF101DataModule,
    VideoDataModule,
    ZeroShotSuiteDataModule,
    protocols,
)
from tc_clip.data.check import run_checks
from tc_clip.lightning.metrics import EvalSetAccuracy


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synth") / "ds")


def synth_videos(synth) -> list[tuple[Path, int]]:
    """(path, label) of the 12 synthetic videos (3 classes)."""
    rows = []
    for lst in (synth.train_list, synth.val_list):
        for line in Path(lst).read_text().splitlines():
            rel, label = line.rsplit(maxsplit=1)
            rows.append((Path(synth.root) / rel, int(label)))
    return rows


# --- list files: a line is never a comment --------------------------------------------------------------


def test_hash_names_are_videos_in_data_module_and_check_data(synth, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    lines = []
    for k, (path, label) in enumerate(synth_videos(synth)):
        name = f"#{k}_{path.name}" if k % 2 == 0 else path.name  # HMDB-51 style: names beginning with '#'
        shutil.copy(path, videos / name)
        lines.append(f"{name} {label}")
    lst = tmp_path / "val split 2.txt"
    lst.write_text("\n".join(lines) + "\n")
    dm = VideoDataModule(
        train_list=str(lst), val_list=str(lst), labels=synth.labels, root=str(videos), num_frames=4, num_workers=0
    )
    assert len(dm.splits("fit")[0].samples) == len(dm.splits("validate")[0].samples) == 12
    report = run_checks(dm, "fit,validate")
    assert report.ok and report.checked == 12 and report.stages == {"fit": 12, "validate": 12}
    assert str(report).splitlines()[-1] == "OK"
    args = ["--data", "VideoDataModule", "--data.train_list", str(lst), "--data.labels", synth.labels,
            "--data.root", str(videos), "--data.num_workers", "0"]
    assert cli_main(["check-data", *args, "--stages", "fit"]) == 0
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  class_path: VideoDataModule\n  init_args:\n    train_list: {tmp_path / 'nope.txt'}\n")
    init = json.dumps({"train_list": str(lst), "labels": synth.labels, "root": str(videos), "num_workers": 0})
    assert cli_main(["check-data", "--config", str(cfg), "--data.init_args", init, "--stages", "fit"]) == 0
    # a missing '#' video is reported, not silently dropped
    lst.write_text(lst.read_text() + "#missing.avi 1\n")
    report = run_checks(dm, ["fit"])
    assert not report.ok and [Path(p).name for p, _ in report.missing] == ["#missing.avi"]
    assert report.missing[0][1].endswith("val split 2.txt:13")
    with pytest.raises(ValueError, match="unknown stages"):
        run_checks(dm, "fit,train")


def test_hmdb_public_list_with_hash_names(tmp_path):
    touch(tmp_path / "videos" / "pick" / "#122_Cleaning_pick_f_cm_np1_ba_goo_2.avi")
    touch(tmp_path / "videos" / "pick" / "pick_a.avi")
    lst = tmp_path / "train1_few_shot_2.txt"
    lst.write_text("pick/#122_Cleaning_pick_f_cm_np1_ba_goo_2.avi 0\n#pick_b.avi 0\npick/pick_a.avi 0\n")
    labels = write_labels(tmp_path / "labels.csv", ["pick"])
    dm = HMDB51DataModule(
        root=str(tmp_path),
        videos_dir=str(tmp_path / "videos"),
        train_list=str(lst),
        labels=labels,
        protocol="few_shot",
    )
    samples = dm.splits("fit")[0].samples
    assert [Path(s.path).name for s in samples] == [
        "#122_Cleaning_pick_f_cm_np1_ba_goo_2.avi",
        "#pick_b.avi",
        "pick_a.avi",
    ]
    assert samples[0].path == str(tmp_path / "videos/pick/#122_Cleaning_pick_f_cm_np1_ba_goo_2.avi")
    assert dm.describe()["shot"] == 3


# --- few-shot: the public K-shot list as it is --------------------------------------------------------


def _hmdb(root: Path, names, per_class: int = 3) -> None:
    """HMDB-51 layout: split files of ``names`` with ``per_class`` training videos each (split 1)."""
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for c in names:
        lines = [f"{c}_{i}.avi 1" for i in range(per_class)] + [f"{c}_test.avi 2"]
        for k in (1, 2, 3):
            (splits / f"{c}_test_split{k}.txt").write_text("\n".join(lines) + "\n")
        touch(root / "videos" / c / f"{c}_0.avi")


def test_public_k_shot_list_is_used_as_it_is(tmp_path):
    _hmdb(tmp_path, ["brush_hair", "cartwheel", "catch"])
    labels = write_labels(tmp_path / "labels.csv", ["brush_hair", "cartwheel", "catch"])
    order = [
        "catch/c9.avi 2",
        "brush_hair/b7.avi 0",
        "cartwheel/w1.avi 1",
        "brush_hair/b2.avi 0",
        "catch/c0.avi 2",
        "cartwheel/w5.avi 1",
    ]
    lst = tmp_path / "train1_few_shot_2.txt"
    lst.write_text("\n".join(order) + "\n")
    kw = dict(
        root=str(tmp_path),
        videos_dir=str(tmp_path / "v"),
        train_list=str(lst),
        labels=labels,
        protocol="few_shot",
        split_dir=str(tmp_path / "drawn"),
    )
    for shot in (None, 2):  # no --data.shot needed; the matching K is accepted
        dm = HMDB51DataModule(**kw, shot=shot, seed=5)
        got = [f"{Path(s.path).parent.name}/{Path(s.path).name} {s.label}" for s in dm.splits("fit")[0].samples]
        assert got == order  # no re-sampling, the file's order
        assert dm.describe() == {
            "protocol": "few_shot",
            "benchmark": "hmdb51",
            "shot": 2,
            "seed": None,
            "train_list": str(lst),
            "train_source": "list_file",
        }
    assert not (tmp_path / "drawn").exists()
    with pytest.raises(ValueError, match=r"train1_few_shot_2.txt: shot=16 asks for more videos than 3 classes hold"):
        HMDB51DataModule(**kw, shot=16).setup("fit")
    # without a list: drawing needs shot, and is labelled as a different experiment
    with pytest.raises(ValueError, match="needs the public K-shot list as train_list"):
        HMDB51DataModule(root=str(tmp_path), protocol="few_shot").setup("fit")
    drawn = HMDB51DataModule(root=str(tmp_path), protocol="few_shot", shot=2, seed=3, split_dir=str(tmp_path / "d"))
    assert drawn.describe()["train_list"] is None  # not drawn yet: describe() does not read the dataset
    assert len(drawn.splits("fit")[0].samples) == 6
    info = drawn.describe()
    assert info["train_source"] == "seed_drawn" and info["shot"] == 2 and info["seed"] == 3
    assert Path(info["train_list"]).name == "hmdb51_split1_train_2shot_seed3.txt"
    assert [s.name for s in drawn.eval_sets("validate")] == ["hmdb51/split1"]
    # the release's label file spells 'brush hair': the official split's 'brush_hair' maps onto it
    spaced = write_labels(tmp_path / "release.csv", ["brush hair", "cartwheel", "catch"])
    listed = HMDB51DataModule(**{**kw, "labels": spaced})
    assert listed.eval_sets("validate")[0].class_names == ["brush hair", "cartwheel", "catch"]
    assert [s.label for s in listed.splits("validate")[0].samples] == [0, 1, 2]


# --- base-to-novel: the published split and the public files --------------------------------------------


def _published_names(bench: str) -> list[str]:
    split = protocols.published_split(bench)
    names = [""] * split.num_classes
    for i, n in zip(split.base_ids + split.novel_ids, split.base + split.novel, strict=True):
        names[i] = n
    return names


@pytest.mark.parametrize("bench", ["hmdb51", "ucf101", "k400", "ssv2"])
def test_published_base_classes_by_name(bench):
    split = protocols.published_split(bench)
    names = _published_names(bench)
    assert len(split.base) + len(split.novel) == split.num_classes == len(set(names))
    assert protocols.published_base_ids(bench, names, "x") == list(split.base_ids)
    # matched by name whatever the id order and spelling ('brush_hair' = 'brush hair')
    shuffled = [n.replace(" ", "_").upper() for n in reversed(names)]
    got = protocols.published_base_ids(bench, shuffled, "x")
    assert [shuffled[i] for i in got] == [n.replace(" ", "_").upper() for n in split.base]
    with pytest.raises(ValueError, match="lacks the published base/novel classes"):
        protocols.published_base_ids(bench, names[:-1], "x")


def test_hmdb_default_base_classes_are_the_published_split(tmp_path):
    names = [n.replace(" ", "_") for n in _published_names("hmdb51")]  # the split files' folder names
    _hmdb(tmp_path, names, per_class=2)
    dm = HMDB51DataModule(root=str(tmp_path), protocol="base_to_novel", shot=1, seed=1, split_dir=str(tmp_path / "s"))
    assert dm.train_class_names == names[25:]  # HMDB base = ids 25-50, not the first half
    assert dm.train_class_names[:2] == ["pour", "pullup"]
    sets = dm.eval_sets("validate")
    assert [(s.name, s.group, s.role, len(s.class_names)) for s in sets] == [
        ("hmdb51/base", "hmdb51", "base", 26),
        ("hmdb51/novel", "hmdb51", "novel", 25),
    ]
    assert sets[1].class_names[0] == "brush_hair"
    assert dm.describe()["train_source"] == "seed_drawn" and dm.describe()["shot"] == 1


def test_public_base_to_novel_files_work_as_they_are(tmp_path):
    base, novel = ["pour", "pullup", "punch"], ["brush hair", "cartwheel"]
    b_csv, n_csv = write_labels(tmp_path / "base.csv", base), write_labels(tmp_path / "novel.csv", novel)
    (tmp_path / "fs_base_s2_train.txt").write_text(
        "pour/a.avi 0\npullup/b.avi 1\npunch/c.avi 2\npour/d.avi 0\npullup/e.avi 1\npunch/f.avi 2\n"
    )
    (tmp_path / "base_val.txt").write_text("pour/v.avi 0\npunch/w.avi 2\n")
    (tmp_path / "novel_val.txt").write_text("cartwheel/x.avi 1\nbrush_hair/y.avi 0\n")
    dm = HMDB51DataModule(
        root=str(tmp_path),
        protocol="base_to_novel",
        train_list=str(tmp_path / "fs_base_s2_train.txt"),
        labels=b_csv,
        val_list=str(tmp_path / "base_val.txt"),
        novel_list=str(tmp_path / "novel_val.txt"),
        novel_labels=n_csv,
    )
    assert dm.train_class_names == base
    assert [s.label for s in dm.splits("fit")[0].samples] == [0, 1, 2, 0, 1, 2]  # positions in the base list
    for stage in ("validate", "test"):
        assert dm.eval_sets(stage) == [
            EvalSetInfo("hmdb51/base", base, "hmdb51", "base"),
            EvalSetInfo("hmdb51/novel", novel, "hmdb51", "novel"),
        ]
    assert [(Path(s.path).name, s.label) for s in dm.splits("test")[1].samples] == [("x.avi", 1), ("y.avi", 0)]
    assert dm.describe() == {
        "protocol": "base_to_novel",
        "benchmark": "hmdb51",
        "shot": 2,
        "seed": 2,
        "train_list": str(tmp_path / "fs_base_s2_train.txt"),
        "train_source": "list_file",
    }
    with pytest.raises(ValueError, match="novel_list needs novel_labels"):
        HMDB51DataModule(
            root=str(tmp_path),
            protocol="base_to_novel",
            labels=b_csv,
            val_list=str(tmp_path / "base_val.txt"),
            novel_list=str(tmp_path / "novel_val.txt"),
        ).setup("validate")
    with pytest.raises(ValueError, match="novel_list is used by protocol base_to_novel only, not 'fully_supervised'"):
        HMDB51DataModule(root=str(tmp_path), novel_list=str(tmp_path / "novel_val.txt"), novel_labels=n_csv)
    with pytest.raises(ValueError, match="shot is used by protocol few_shot / base_to_novel only, not 'zero_shot'"):
        HMDB51DataModule(root=str(tmp_path), protocol="zero_shot", shot=16)


def test_novel_sets_are_deferred_while_fitting(tmp_path):
    """While the trainer fits, the novel sets leave eval_sets("validate") and val_dataloader() (in the same
    order as the rest); outside fit, in test, or with defer_novel=False every set is there."""
    names = ["pour", "pullup", "punch", "brush hair", "cartwheel"]
    labels = write_labels(tmp_path / "labels.csv", names)
    (tmp_path / "train.txt").write_text("".join(f"{n}/t{k}.avi {i}\n" for i, n in enumerate(names) for k in range(2)))
    (tmp_path / "a.txt").write_text("".join(f"{n}/a.avi {i}\n" for i, n in enumerate(names)))
    (tmp_path / "b.txt").write_text("".join(f"{n}/b.avi {i}\n" for i, n in enumerate(names)))
    for n in names:  # a Trainer's loaders need the listed videos to exist
        for v in ("t0", "t1", "a", "b"):
            touch(tmp_path / n / f"{v}.avi")

    def module(**kw):
        return VideoDataModule(
            root=str(tmp_path), protocol="base_to_novel", labels=labels, train_list=str(tmp_path / "train.txt"),
            val_list=[str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], base_classes=names[:3], shot=2,
            num_workers=0, **kw,
        )

    def fit_state(fn):
        return SimpleNamespace(state=SimpleNamespace(fn=TrainerFn(fn)), log_dir=None)

    dm = module()
    every = dm.eval_sets("validate")
    assert [(s.name, s.role) for s in every] == [("a/base", "base"), ("a/novel", "novel"), ("b/base", "base"),
                                                 ("b/novel", "novel")]
    assert len(dm.val_dataloader()) == 4 and dm.deferred_sets() == [every[1], every[3]]
    dm.trainer = fit_state("fit")
    assert dm.eval_sets("validate") == [every[0], every[2]]
    loaders = dm.val_dataloader()
    assert [[s.path for s in dl.dataset.samples] for dl in loaders] == [
        [s.path for s in dm.splits("validate")[i].samples] for i in (0, 2)
    ]
    assert dm.deferred_sets() == [every[1], every[3]]
    assert len(dm.eval_sets("test")) == 4 and len(dm.test_dataloader()) == 4  # only validation is deferred
    dm.trainer = fit_state("validate")
    assert dm.eval_sets("validate") == every and len(dm.val_dataloader()) == 4
    kept = module(defer_novel=False)
    kept.trainer = fit_state("fit")
    assert kept.eval_sets("validate") == every and len(kept.val_dataloader()) == 4 and kept.deferred_sets() == []


# --- zero-shot: three splits per benchmark, the whole suite in one run --------------------------------


def _ucf(root: Path) -> None:
    a = root / "ucfTrainTestlist"
    a.mkdir(parents=True)
    (a / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    for k in (1, 2, 3):
        (a / f"trainlist0{k}.txt").write_text(f"ApplyEyeMakeup/v_a_g0{k}.avi 1\n")
        (a / f"testlist0{k}.txt").write_text(f"Archery/v_b_g1{k}.avi\nApplyEyeMakeup/v_a_g1{k}.avi\n")


def _k600_lists(root: Path) -> tuple[list[str], list[str]]:
    lists, labels = [], []
    for k in (1, 2, 3):
        (root / f"split{k}.txt").write_text(f"val/v{k}.mp4 0\nval/w{k}.mp4 1\n")
        lists.append(str(root / f"split{k}.txt"))
        labels.append(write_labels(root / f"split{k}_labels.csv", [f"new{k}a", f"new{k}b"]))
    return lists, labels


def test_zero_shot_splits_are_grouped_without_extra_options(tmp_path):
    _hmdb(tmp_path / "hmdb", ["brush_hair", "cartwheel"])
    labels = write_labels(tmp_path / "labels.csv", ["brush_hair", "cartwheel"])
    lists = []
    for k in (1, 2, 3):
        (tmp_path / f"hmdb_split{k}_val.txt").write_text(f"brush_hair/x{k}.avi 0\n")
        lists.append(str(tmp_path / f"hmdb_split{k}_val.txt"))
    for dm in (
        HMDB51DataModule(root=str(tmp_path / "hmdb"), protocol="zero_shot"),  # the official split files
        HMDB51DataModule(root=str(tmp_path / "hmdb"), protocol="zero_shot", test_list=lists, labels=labels),
    ):
        assert [(s.name, s.group) for s in dm.eval_sets("test")] == [(f"hmdb51/split{k}", "hmdb51") for k in (1, 2, 3)]
    renamed = HMDB51DataModule(root=str(tmp_path / "hmdb"), protocol="zero_shot", eval_names=["a", "b", "c"])
    assert [s.name for s in renamed.eval_sets("test")] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="eval_names gives 1 names but the test stage has 3"):
        HMDB51DataModule(root=str(tmp_path / "hmdb"), protocol="zero_shot", eval_names=["a"]).eval_sets("test")


def test_zero_shot_suite_in_one_run(tmp_path):
    _hmdb(tmp_path / "hmdb", ["brush_hair", "cartwheel"])
    _ucf(tmp_path / "ucf")
    k_lists, k_labels = _k600_lists(tmp_path)
    suite = ZeroShotSuiteDataModule(
        hmdb51=HMDB51DataModule(root=str(tmp_path / "hmdb")),
        ucf101=UCF101DataModule(root=str(tmp_path / "ucf"), protocol="zero_shot"),
        k600=Kinetics600DataModule(root=str(tmp_path), test_list=k_lists, test_labels=k_labels),
        num_frames=4,
        input_size=32,
        batch_size=2,
        num_workers=0,
    )
    sets = suite.eval_sets("test")
    want = [f"{b}/split{k}" for b in ("hmdb51", "ucf101", "k600") for k in (1, 2, 3)]
    assert [s.name for s in sets] == want
    assert [s.group for s in sets] == [b for b in ("hmdb51", "ucf101", "k600") for _ in range(3)]
    assert sets[6].class_names == ["new1a", "new1b"] and sets[3].class_names == ["ApplyEyeMakeup", "Archery"]
    suite.setup("test")
    loaders = suite.test_dataloader()
    assert len(loaders) == 9 and all(dl.batch_size == 2 for dl in loaders)
    assert [len(dl.dataset) for dl in loaders] == [2, 2, 2, 2, 2, 2, 2, 2, 2]
    assert loaders[0].dataset.num_frames == 4 and loaders[0].dataset.views == 2
    assert suite.describe()["protocol"] == "zero_shot" and suite.describe()["benchmarks"] == [
        "hmdb51",
        "ucf101",
        "k600",
    ]
    assert suite.train_class_names == ["brush_hair", "cartwheel"]
    renamed = ZeroShotSuiteDataModule(
        ucf101=UCF101DataModule(root=str(tmp_path / "ucf")), eval_names=["u1", "u2", "u3"]
    )
    assert [s.name for s in renamed.eval_sets("validate")] == ["u1", "u2", "u3"]
    with pytest.raises(ValueError, match=r"hmdb51.num_frames=8 contradicts the suite's num_frames=4"):
        ZeroShotSuiteDataModule(hmdb51=HMDB51DataModule(root=str(tmp_path / "hmdb"), num_frames=8), num_frames=4)
    with pytest.raises(ValueError, match="ucf101.protocol is 'few_shot'"):
        ZeroShotSuiteDataModule(ucf101=UCF101DataModule(root=str(tmp_path / "ucf"), protocol="few_shot"))


def test_zero_shot_suite_from_a_config(tmp_path):
    from jsonargparse import ArgumentParser

    _ucf(tmp_path / "ucf")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--data", type=ZeroShotSuiteDataModule)
    cfg = parser.parse_args(
        ["--data", "ZeroShotSuiteDataModule", "--data.ucf101.root", str(tmp_path / "ucf"), "--data.num_frames", "8"]
    )
    suite = parser.instantiate(cfg).data
    assert suite.members["ucf101"].num_frames == 8 and suite.members["ucf101"].protocol == "zero_shot"
    assert [s.name for s in suite.eval_sets("test")] == ["ucf101/split1", "ucf101/split2", "ucf101/split3"]


# --- broken evaluation videos: left out, counted once ----------------------------------------------------


def test_unreadable_eval_videos_are_left_out_of_top1(synth, tmp_path):
    readable = synth_videos(synth)[:9]
    broken = []
    for k in range(5):
        p = tmp_path / f"broken{k}.mp4"
        if k % 2:  # 2 corrupt files, 3 missing ones
            p.write_bytes(b"\x00not a video" * (k + 3))
        broken.append((p, 0))
    rows = readable[:4] + broken[:2] + readable[4:7] + broken[2:4] + readable[7:] + broken[4:]
    assert len(rows) == 14
    lst = tmp_path / "val.txt"
    lst.write_text("".join(f"{p} {label}\n" for p, label in rows))
    dm = VideoDataModule(
        val_list=str(lst),
        labels=synth.labels,
        num_frames=4,
        input_size=32,
        eval_batch_size=4,
        num_workers=0,
        protocol="zero_shot",
    )
    dm.setup("validate")
    ds = dm.datasets("validate")[0]
    # a stand-in classifier: right on the first 7 readable videos, wrong on the other 2 (7/9 = 0.778)
    predicted = {}
    for n, (i, (_path, label)) in enumerate((i, r) for i, r in enumerate(rows) if r in readable):
        predicted[round(ds.load(i)[0].double().sum().item(), 3)] = label if n < 7 else (label + 1) % 3
    metric = EvalSetAccuracy(num_classes=3)
    with pytest.warns(BadVideoWarning) as record:
        for batch in dm.val_dataloader()[0]:
            preds = [predicted.get(round(v.double().sum().item(), 3), 0) for v in batch["video"]]
            scores = torch.nn.functional.one_hot(torch.tensor(preds), 3).float()
            metric.update(scores, batch["label"], batch["index"], batch["skipped"])
            # DDP padding repeats videos: they count once
            metric.update(scores[:2], batch["label"][:2], batch["index"][:2], batch["skipped"][:2])
    out = metric.compute()
    assert out["top1"].item() == pytest.approx(7 / 9)
    assert (out["skipped"].item(), out["count"].item(), out["labelled"].item()) == (5, 14, 9)
    named = [str(w.message) for w in record if issubclass(w.category, BadVideoWarning)]
    assert sorted(Path(m.split()[2]).name for m in named) == [f"broken{k}.mp4" for k in range(5)]  # once each


def test_eval_metric_counts_a_skipped_video_once_and_never_as_a_hit():
    metric = EvalSetAccuracy(num_classes=3, top_k=(1,))
    scores = torch.eye(3)  # would be a hit on video 2 if its label counted
    metric.update(scores, torch.tensor([0, 1, -1]), torch.tensor([0, 1, 2]), torch.tensor([0, 0, 1]))
    metric.update(scores[2:], torch.tensor([-1]), torch.tensor([2]), torch.tensor([1]))  # DDP padding repeat
    out = metric.compute()
    assert out["top1"].item() == 1.0
    assert (out["skipped"].item(), out["labelled"].item(), out["count"].item()) == (1, 2, 3)


# --- describe() --------------------------------------------------------------------------------------


def test_describe_of_the_benchmark_modules(tmp_path, synth):
    _ucf(tmp_path / "ucf")
    dm = UCF101DataModule(root=str(tmp_path / "ucf"))
    assert dm.describe() == {
        "protocol": "fully_supervised",
        "benchmark": "ucf101",
        "shot": None,
        "seed": None,
        "train_list": None,
        "train_source": "dataset",
    }
    generic = VideoDataModule(train_list=synth.train_list, labels=synth.labels, eval_group="synthetic")
    assert generic.describe()["benchmark"] == "synthetic" and generic.describe()["train_source"] == "list_file"
    # a test-only run does not read the dataset's training annotations to describe itself
    (tmp_path / "ucf" / "ucfTrainTestlist" / "trainlist01.txt").write_text("broken line x y\n")
    zs = UCF101DataModule(root=str(tmp_path / "ucf"), protocol="zero_shot")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert zs.describe()["train_source"] == "dataset"
    assert json.dumps(zs.describe())  # the results file stores it as JSON
