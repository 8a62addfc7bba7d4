"""List, label and name files written by other tools: a UTF-8 byte-order mark is not part of the text, and a
class name must say something (issue 17, points 12 and 13)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from data_helpers import touch
from tc_clip import TCCLIP
from tc_clip.data import VideoDataModule, synthetic
from tc_clip.data import annotations as ann
from tc_clip.data.dataset import BadVideoWarning

BOM = "\ufeff"


def with_bom(path: Path, text: str) -> str:
    path.write_text(BOM + text, encoding="utf-8")
    return str(path)


# ----------------------------------------------------------------------------------------- point 12
@pytest.fixture(scope="module")
def three_videos(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("bom") / "ds", num_classes=3, videos_per_class=1,
                              val_per_class=1, num_frames=8, width=32, height=32)


def test_a_list_file_with_a_bom_keeps_its_first_video(three_videos, tmp_path):
    synth = three_videos
    lines = Path(synth.val_list).read_text(encoding="utf-8")
    bom_list = with_bom(tmp_path / "val.txt", lines)
    first = ann.read_list_file(synth.val_list, root=synth.root)[0]
    assert ann.read_list_file(bom_list, root=synth.root)[0].path == first.path
    assert ann.list_videos(bom_list)[0].path.endswith(Path(first.path).name)
    assert not ann.list_videos(bom_list)[0].path.split("/")[-1].startswith(BOM)

    dm = VideoDataModule(val_list=bom_list, labels=synth.labels, root=synth.root, num_frames=2, input_size=32,
                         batch_size=3, num_workers=0)
    dm.setup("validate")
    with warnings.catch_warnings():
        warnings.simplefilter("error", BadVideoWarning)  # every video of the list is found and decoded
        batch = next(iter(dm.val_dataloader()[0]))
    assert batch["skipped"].tolist() == [0, 0, 0]
    assert batch["label"].tolist() == [s.label for s in ann.read_list_file(synth.val_list)]


def test_a_labels_csv_with_a_bom_and_its_header_is_read(tmp_path):
    labels = with_bom(tmp_path / "labels.csv", "id,name\n0,archery\n1,bowling\n")
    assert ann.read_labels_csv(labels) == ["archery", "bowling"]
    assert ann.read_class_list(labels) == ["archery", "bowling"]


@pytest.mark.parametrize("suffix, text", [
    (".txt", "archery\nbowling\n"),
    (".json", json.dumps(["archery", "bowling"])),
    (".json", json.dumps({"0": "archery", "1": "bowling"})),
])
def test_a_names_file_with_a_bom_is_read(tmp_path, suffix, text):
    assert ann.read_class_list(with_bom(tmp_path / f"names{suffix}", text)) == ["archery", "bowling"]


def test_llm_names_with_a_bom_are_read(tmp_path):
    names = with_bom(tmp_path / "llm.json", json.dumps({"0": "shooting arrows", "1": "rolling a ball"}))
    assert ann.read_llm_names(names, 2) == ["shooting arrows", "rolling a ball"]


def test_benchmark_annotations_with_a_bom_are_read(tmp_path):
    ucf = tmp_path / "ucf"
    with_bom(ucf.mkdir() or ucf / "classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n")
    with_bom(ucf / "trainlist01.txt", "ApplyEyeMakeup/v_a.avi 1\nArchery/v_b.avi 2\n")
    samples, names = ann.read_ucf101(ucf, tmp_path / "videos")
    assert names == ["ApplyEyeMakeup", "Archery"] and [s.label for s in samples] == [0, 1]

    hmdb = tmp_path / "hmdb"
    with_bom(hmdb.mkdir() or hmdb / "brush_hair_test_split1.txt", "a.avi 1\nb.avi 2\n")
    samples, names = ann.read_hmdb51(hmdb, tmp_path / "videos")
    assert names == ["brush_hair"] and samples[0].path.endswith("brush_hair/a.avi")

    labels = with_bom(tmp_path / "labels.json", json.dumps({"Putting something on a surface": "0"}))
    split = with_bom(tmp_path / "validation.json",
                     json.dumps([{"id": "7", "template": "Putting [something] on a surface"}]))
    samples, names = ann.read_ssv2(labels, split, tmp_path / "videos")
    assert names == ["Putting something on a surface"] and samples[0].label == 0

    touch(tmp_path / "k400" / "abc_000001_000011.mp4")
    csv = with_bom(tmp_path / "k400.csv", "label,youtube_id,time_start,time_end,split\nabseiling,abc,1,11,val\n")
    samples, names, missing = ann.read_kinetics_csv(csv, tmp_path / "k400")
    assert names == ["abseiling"] and len(samples) == 1 and not missing


# ----------------------------------------------------------------------------------------- point 13
@pytest.fixture(scope="module")
def model():
    return TCCLIP.from_clip("tiny", num_frames=2, num_context_tokens=8, merge_step=20)


@pytest.mark.parametrize("empty", ["_", "___", BOM, " _ ", "\t_\n", "_ _", f"{BOM}_", "\u00a0"])
def test_a_class_name_that_parses_to_nothing_is_refused_by_position(model, empty):
    with pytest.raises(ValueError, match=r"position.*\b1\b") as err:
        model.set_class_names(["archery", empty, "bowling"])
    assert "nothing" in str(err.value)


def test_names_with_underscores_and_words_still_pass(model):
    model.set_class_names(["brush_hair", "ApplyEyeMakeup", "a_", "_jump_"])
    assert model.class_names == ["brush_hair", "ApplyEyeMakeup", "a_", "_jump_"]


def test_a_name_from_a_file_that_parses_to_nothing_is_refused(model, tmp_path):
    names = ann.read_class_list(with_bom(tmp_path / "labels.csv", "id,name\n0,archery\n1,___\n"))
    with pytest.raises(ValueError, match=r"position.*\b1\b.*'___'"):
        model.set_class_names(names)
