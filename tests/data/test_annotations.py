"""Annotation formats, label errors and the protocols (few-shot, base-to-novel, zero-shot, subsets).

Videos are empty placeholder files: only parsing is tested here."""

import json
from pathlib import Path

import pytest

from data_helpers import touch, write_labels
from tc_clip.data import (
    EvalSetInfo,
    HMDB51DataModule,
    Kinetics400DataModule,
    Kinetics600DataModule,
    SSv2DataModule,
    UCF101DataModule,
    VideoDataModule,
)
from tc_clip.data import annotations as ann


@pytest.fixture
def lists(tmp_path):
    names = ["ApplyEyeMakeup", "brush_hair", "Juggling", "Surfing"]
    labels = write_labels(tmp_path / "labels.csv", names)
    train = [f"v/c{c}_{i}.mp4 {c}" for c in range(4) for i in range(5)]
    val = [f"v/val_c{c}.mp4 {c}" for c in range(4)]
    (tmp_path / "train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "val.txt").write_text("\n".join(val) + "\n")
    return tmp_path, labels, names


def test_list_file_and_labels(lists):
    d, labels, names = lists
    assert ann.read_labels_csv(labels) == names
    samples = ann.read_list_file(d / "train.txt", num_classes=4)
    assert len(samples) == 20 and samples[0].path == str(d / "v/c0_0.mp4") and samples[0].label == 0
    assert samples[6].where == f"{d / 'train.txt'}:7"
    dm = VideoDataModule(
        train_list=str(d / "train.txt"), val_list=str(d / "val.txt"), labels=labels, root=str(d / "other")
    )
    assert dm.train_class_names == names  # raw names, not parsed
    assert dm.eval_sets("validate") == [EvalSetInfo("val", names)]
    assert dm.eval_sets("test") == [EvalSetInfo("val", names)]
    assert dm.splits("fit")[0].samples[0].path == str(d / "other/v/c0_0.mp4")


@pytest.mark.parametrize(
    "line, message",
    [
        ("v/a.mp4 7", "label 7 out of range 0..3"),
        ("justonefield", "expected 'relative/path label'"),
        ("v/a.mp4 x", "label 'x' is not an integer"),
    ],
)
def test_list_file_errors_name_file_and_line(lists, line, message):
    d, labels, _ = lists
    bad = d / "bad.txt"
    bad.write_text("v/ok.mp4 1\n" + line + "\n")
    dm = VideoDataModule(train_list=str(bad), labels=labels)
    with pytest.raises(ValueError, match=rf"bad\.txt:2: {message}"):
        dm.setup("fit")


def test_labels_csv_errors(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("id,name\n0,a\n2,b\n")
    with pytest.raises(ValueError, match="class ids must be 0..1"):
        ann.read_labels_csv(p)
    p.write_text("idx,label\n0,a\n")
    with pytest.raises(ValueError, match="l.csv:1"):
        ann.read_labels_csv(p)


def test_llm_names(lists):
    d, labels, names = lists
    (d / "llm.json").write_text(json.dumps({str(i): f"a video of {n}" for i, n in enumerate(names)}))
    dm = VideoDataModule(
        train_list=str(d / "train.txt"),
        val_list=str(d / "val.txt"),
        labels=labels,
        llm_names=str(d / "llm.json"),
        eval_llm_names=str(d / "llm.json"),
    )
    assert dm.train_class_names[1] == "a video of brush_hair"
    assert dm.eval_sets("validate")[0].class_names[3] == "a video of Surfing"


def test_class_folders(tmp_path):
    for c in ("walk", "run"):
        for i in range(2):
            touch(tmp_path / "train" / c / f"{c}{i}.avi")
    touch(tmp_path / "train" / "run" / "notes.txt")
    dm = VideoDataModule(train_list=str(tmp_path / "train"), val_list=str(tmp_path / "train"))
    assert dm.train_class_names == ["run", "walk"]
    assert sorted(s.label for s in dm.splits("fit")[0].samples) == [0, 0, 1, 1]
    labels = write_labels(tmp_path / "labels.csv", ["walk"])
    with pytest.raises(ValueError, match="'run' is not in the label file"):
        VideoDataModule(train_list=str(tmp_path / "train"), labels=labels).setup("fit")


def test_few_shot_drawn_with_a_seed_is_labelled_and_written(lists, tmp_path, caplog):
    d, labels, _ = lists
    kw = dict(
        train_list=str(d / "train.txt"),
        val_list=str(d / "val.txt"),
        labels=labels,
        protocol="few_shot",
        shot=2,
        split_dir=str(tmp_path / "splits"),
    )
    a, b, c = (VideoDataModule(**kw, seed=s) for s in (1, 1, 2))
    sa = a.splits("fit")[0].samples
    assert sorted(s.label for s in sa) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [s.path for s in sa] == [s.path for s in b.splits("fit")[0].samples]
    assert [s.path for s in sa] != [s.path for s in c.splits("fit")[0].samples]
    written = Path(a.few_shot_list).read_text().split("\n")
    assert Path(a.few_shot_list).name == "videos_train_2shot_seed1.txt"
    assert written[0] == f"{sa[0].path} {sa[0].label}"
    assert "different experiment from the paper's" in caplog.text
    assert a.describe() == {
        "protocol": "few_shot",
        "benchmark": None,
        "shot": 2,
        "seed": 1,
        "train_list": a.few_shot_list,
        "train_source": "seed_drawn",
    }
    # the written list given back is used as it is (no --data.shot): the same videos, K from the list
    again = VideoDataModule(train_list=a.few_shot_list, labels=labels, protocol="few_shot")
    assert [s.path for s in again.splits("fit")[0].samples] == [s.path for s in sa]
    assert again.describe()["shot"] == 2 and again.describe()["train_source"] == "list_file"
    # more shots than the list holds is an error, not a silent 2-shot run
    with pytest.raises(ValueError, match=r"videos_train_2shot_seed1.txt: shot=3 asks for more videos than 4 classes"):
        VideoDataModule(train_list=a.few_shot_list, labels=labels, protocol="few_shot", shot=3).setup("fit")


def test_base_to_novel_with_named_base_classes(lists, tmp_path):
    d, labels, names = lists
    kw = dict(
        train_list=str(d / "train.txt"),
        val_list=str(d / "val.txt"),
        labels=labels,
        protocol="base_to_novel",
        split_dir=str(tmp_path),
    )
    # a generic list has no published split: the base classes must be named, never "the first half"
    with pytest.raises(ValueError, match="no published base/novel split .* set base_classes"):
        VideoDataModule(**kw).setup("fit")
    dm = VideoDataModule(**kw, base_classes=["Surfing", "brush_hair"], shot=3, seed=1)
    assert dm.train_class_names == ["Surfing", "brush_hair"]
    assert sorted(s.label for s in dm.splits("fit")[0].samples) == [0, 0, 0, 1, 1, 1]
    sets = dm.eval_sets("validate")
    assert [(s.name, s.role, s.class_names) for s in sets] == [
        ("val/base", "base", ["Surfing", "brush_hair"]),
        ("val/novel", "novel", ["ApplyEyeMakeup", "Juggling"]),
    ]
    novel = dm.splits("validate")[1].samples
    assert [(Path(s.path).name, s.label) for s in novel] == [("val_c0.mp4", 0), ("val_c2.mp4", 1)]
    assert dm.describe()["train_source"] == "seed_drawn" and dm.describe()["shot"] == 3


def test_class_subset_and_missing_name(lists, tmp_path):
    d, labels, _ = lists
    (tmp_path / "temporal.txt").write_text("Juggling\nbrush_hair\n")
    dm = VideoDataModule(
        train_list=str(d / "train.txt"),
        val_list=str(d / "val.txt"),
        labels=labels,
        class_subset=str(tmp_path / "temporal.txt"),
    )
    assert dm.train_class_names == ["Juggling", "brush_hair"]
    assert sorted({s.label for s in dm.splits("validate")[0].samples}) == [0, 1]
    with pytest.raises(ValueError, match="Dancing"):
        VideoDataModule(train_list=str(d / "train.txt"), labels=labels, class_subset=["Dancing"]).setup("fit")


def test_zero_shot_multi_split_lists(lists, tmp_path):
    d, labels, names = lists
    other = write_labels(tmp_path / "other.csv", ["x", "y", "z", "w"])
    dm = VideoDataModule(
        train_list=str(d / "train.txt"),
        labels=labels,
        protocol="zero_shot",
        test_list=[str(d / "val.txt"), str(d / "val.txt")],
        test_labels=[labels, other],
        eval_group="demo",
    )
    sets = dm.eval_sets("test")
    assert [s.name for s in sets] == ["val_0", "val_1"]
    assert sets[1].class_names == ["x", "y", "z", "w"] and {s.group for s in sets} == {"demo"}


def _ucf(root: Path):
    a = root / "ucfTrainTestlist"
    a.mkdir(parents=True)
    (a / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    for k in (1, 2, 3):
        (a / f"trainlist0{k}.txt").write_text(
            f"ApplyEyeMakeup/v_ApplyEyeMakeup_g0{k}_c01.avi 1\nArchery/v_Archery_g0{k}_c01.avi 2\n"
        )
        (a / f"testlist0{k}.txt").write_text(f"Archery/v_Archery_g1{k}_c01.avi\n")
    return a


def test_ucf101_annotations(tmp_path):
    _ucf(tmp_path)
    dm = UCF101DataModule(root=str(tmp_path), split=2)
    assert dm.train_class_names == ["ApplyEyeMakeup", "Archery"]
    train = dm.splits("fit")[0].samples
    assert [(s.path, s.label) for s in train] == [
        (str(tmp_path / "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi"), 0),
        (str(tmp_path / "Archery/v_Archery_g02_c01.avi"), 1),
    ]
    assert [s.label for s in dm.splits("validate")[0].samples] == [1]
    zs = UCF101DataModule(root=str(tmp_path), protocol="zero_shot")
    sets = zs.eval_sets("test")
    assert [(s.name, s.group) for s in sets] == [(f"ucf101/split{k}", "ucf101") for k in (1, 2, 3)]
    # a label file that lacks a class used by the annotations
    labels = write_labels(tmp_path / "labels.csv", ["ApplyEyeMakeup"])
    with pytest.raises(ValueError, match=r"trainlist01.txt:2: class 'Archery' is not in the label file"):
        UCF101DataModule(root=str(tmp_path), labels=labels).setup("fit")
    (tmp_path / "ucfTrainTestlist/trainlist01.txt").write_text("Archery/v_x.avi 9\n")
    with pytest.raises(ValueError, match=r"trainlist01.txt:1: label 9 out of range"):
        UCF101DataModule(root=str(tmp_path)).setup("fit")


def test_hmdb51_annotations(tmp_path):
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for c in ("brush_hair", "cartwheel"):
        touch(tmp_path / "videos" / c / f"{c}_a.avi")
        for k in (1, 2, 3):
            (splits / f"{c}_test_split{k}.txt").write_text(
                f"{c}_a.avi {1 if k == 1 else 2}\n{c}_b.avi 2\n{c}_c.avi 0\n"
            )
    dm = HMDB51DataModule(root=str(tmp_path))
    assert dm.train_class_names == ["brush_hair", "cartwheel"]
    train = dm.splits("fit")[0].samples
    assert [(s.path, s.label) for s in train] == [
        (str(tmp_path / "videos/brush_hair/brush_hair_a.avi"), 0),
        (str(tmp_path / "videos/cartwheel/cartwheel_a.avi"), 1),
    ]
    assert len(dm.splits("validate")[0].samples) == 2
    zs = HMDB51DataModule(root=str(tmp_path), protocol="zero_shot")
    assert [len(s.samples) for s in zs.splits("test")] == [2, 4, 4]
    assert {s.group for s in zs.eval_sets("validate")} == {"hmdb51"}
    (splits / "cartwheel_test_split1.txt").write_text("cartwheel_a.avi 1\nbroken line here\n")
    with pytest.raises(ValueError, match=r"cartwheel_test_split1.txt:2"):
        HMDB51DataModule(root=str(tmp_path)).setup("fit")


def test_ssv2_annotations(tmp_path):
    labels = {"Holding something": "0", "Putting something on a surface": "1"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "train.json").write_text(
        json.dumps(
            [
                {
                    "id": "11",
                    "template": "Putting [something] on a surface",
                    "label": "putting a cup on a surface",
                },
                {"id": "12", "template": "Holding [something]", "label": "holding a pen"},
            ]
        )
    )
    (tmp_path / "validation.json").write_text(json.dumps([{"id": "13", "template": "Holding [Something]"}]))
    dm = SSv2DataModule(root=str(tmp_path))
    assert dm.flip is False
    assert dm.train_class_names == ["Holding something", "Putting something on a surface"]
    assert [(Path(s.path).name, s.label) for s in dm.splits("fit")[0].samples] == [
        ("11.webm", 1),
        ("12.webm", 0),
    ]
    (tmp_path / "validation.json").write_text(json.dumps([{"id": "13", "template": "Dropping [something]"}]))
    with pytest.raises(ValueError, match=r"validation.json: entry 0: class 'Dropping something'"):
        SSv2DataModule(root=str(tmp_path)).setup("validate")


def test_kinetics_csv(tmp_path):
    a = tmp_path / "annotations"
    a.mkdir()
    header = "label,youtube_id,time_start,time_end,split\n"
    (a / "train.csv").write_text(
        header + "abseiling,aaa,10,20,train\nzumba,bbb,0,10,train\nzumba,ccc,5,15,train\n"
    )
    (a / "validate.csv").write_text(header + "zumba,ddd,1,11,val\n")
    touch(tmp_path / "train" / "abseiling" / "aaa_000010_000020.mp4")
    touch(tmp_path / "train" / "bbb_000000_000010.mp4")
    touch(tmp_path / "val" / "ddd.mp4")
    with pytest.warns(UserWarning, match="1 of 3 videos listed in .*train.csv were not found"):
        dm = Kinetics400DataModule(root=str(tmp_path))
        train = dm.splits("fit")[0].samples
    assert dm.train_class_names == ["abseiling", "zumba"]
    assert [(Path(s.path).name, s.label) for s in train] == [
        ("aaa_000010_000020.mp4", 0),
        ("bbb_000000_000010.mp4", 1),
    ]
    assert [(Path(s.path).name, s.label) for s in dm.splits("validate")[0].samples] == [("ddd.mp4", 1)]
    k600 = Kinetics600DataModule(
        root=str(tmp_path),
        protocol="zero_shot",
        test_list=[str(tmp_path / "l1.txt")],
        test_labels=[str(tmp_path / "n.csv")],
    )
    (tmp_path / "l1.txt").write_text("val/ddd.mp4 0\n")
    write_labels(tmp_path / "n.csv", ["new class"])
    assert k600.eval_sets("test") == [EvalSetInfo("k600/split1", ["new class"], "k600")]


def test_stages_are_resolved_independently(lists, tmp_path):
    d, labels, names = lists
    # zero-shot evaluation only: no training list or annotations needed, validate uses the test lists
    dm = VideoDataModule(test_list=[str(d / "val.txt")], labels=labels, protocol="zero_shot", eval_group="g")
    assert dm.eval_sets("test") == [EvalSetInfo("val", names, "g")]
    assert dm.eval_sets("validate") == dm.eval_sets("test")
    dm.setup("test")
    assert dm.splits("fit") == [] and dm.train_class_names == names
