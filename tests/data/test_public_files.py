"""The public list files on the layouts the README describes (issue 20): bare HMDB-51 file names found in
the class folders, unambiguously, and evaluation without the official split files."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_helpers import touch, write_labels
from tc_clip.cli import main
from tc_clip.data import HMDB51DataModule, VideoDataModule, synthetic
from tc_clip.data.errors import VideoLayoutError
from tc_clip.data.layouts import VideoLocator

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# file names in the public HMDB-51 form (the class inside the name; some begin with '#' or hold brackets)
PUBLIC = {
    "brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_1.avi",
                   "brushing_hair_2_brush_hair_h_nm_np1_le_goo_0.avi"],
    "cartwheel": ["(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi", "Cartwheel_cartwheel_f_cm_np1_ri_med_1.avi",
                  "cartwheel_cartwheel_f_cm_np1_le_bad_0.avi"],
    "pick": ["#122_Cleaning_Up_The_Beach_In_Chiba__Japan_pick_f_nm_np1_fr_bad_2.avi",
             "BIG_FISH_pick_f_nm_np1_fr_med_8.avi", "Pick_up_litter_pick_f_cm_np1_fr_goo_0.avi"],
}
CLIPS = ["--data.num_frames", "4", "--data.input_size", "64", "--data.num_workers", "0"]
TINY = ["--model.model_name", "tiny", "--model.pretrained", "null", "--model.config.num_context_tokens", "16", *CLIPS,
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    """The README's HMDB-51 layout (<root>/<class>/<video>.avi + testTrainMulti_7030_splits/) and the
    public files' shape: bare names in the 2-shot list and in val1-3.txt, an 'id,name' labels CSV."""
    base = tmp_path_factory.mktemp("public")
    frames = np.random.default_rng(0).integers(0, 255, size=(8, 48, 64, 3), dtype=np.uint8)
    synthetic.write_video(base / "src.avi", frames, fps=8)
    root = base / "hmdb51"
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for c, names in PUBLIC.items():
        (root / c).mkdir()
        for n in names:
            shutil.copyfile(base / "src.avi", root / c / n)
        for k in (1, 2, 3):  # video k-1 is the test video of split k, the others train
            (splits / f"{c}_test_split{k}.txt").write_text("".join(f"{n} {2 if i == k - 1 else 1}\n"
                                                                     for i, n in enumerate(names)))
    files = base / "public"
    files.mkdir()
    labels = write_labels(files / "labels.csv", list(PUBLIC))
    (files / "train1_few_shot_2.txt").write_text("".join(f"{n} {i}\n" for i, names in enumerate(PUBLIC.values())
                                                         for n in names[1:]))
    for k in (1, 2, 3):
        (files / f"val{k}.txt").write_text("".join(f"{names[k - 1]} {i}\n" for i, names in enumerate(PUBLIC.values())))
    return {"root": root, "files": files, "labels": labels, "base": base}


def test_readme_few_shot_hmdb_command_on_the_readme_layout(public, tmp_path, capsys):
    """check-data and a 1-epoch fit of the README's few-shot HMDB-51 command (main: 'missing videos: 6', then
    '... videos in a row could not be read')."""
    args = ["--config", str(CONFIGS / "few_shot_hmdb.yaml"), "--data.root", str(public["root"]),
            "--data.train_list", str(public["files"] / "train1_few_shot_2.txt"), "--data.labels", public["labels"]]
    assert main(["check-data", *args, *CLIPS, "--stages", "fit", "validate"]) == 0
    out = capsys.readouterr().out
    assert "checked 9 videos" in out and "6 of 6 videos not where the list says were found" in out
    assert "6 in one folder per class" in out
    assert main(["fit", *args, *TINY, "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1",
                 "--global_batch_size", "2",
                 "--data.batch_size", "2", "--data.val_views", "1", "--trainer.limit_train_batches", "2",
                 "--trainer.default_root_dir", str(tmp_path / "runs")]) == 0
    assert "best val/hmdb51/split1/top1 = " in capsys.readouterr().out


def test_lookup_is_unambiguous_says_what_it_tried_and_indexes_only_when_needed(public, tmp_path, monkeypatch):
    root = tmp_path / "root"
    labels = write_labels(tmp_path / "labels.csv", ["brush hair", "ApplyEyeMakeup"])
    lst = tmp_path / "list.txt"
    touch(root / "brush_hair" / "a.avi")
    touch(root / "videos" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi")  # UCF: class from the name
    lst.write_text("a.avi 0\nv_ApplyEyeMakeup_g01_c01.avi 0\n")  # wrong label: the name still finds it
    (split,) = VideoDataModule(train_list=str(lst), labels=labels, root=str(root)).splits("fit")
    assert [s.path for s in split.samples] == [str(root / "brush_hair/a.avi"),
                                               str(root / "videos/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi")]
    touch(root / "a.avi")  # now also flat: listed elsewhere, it is in two places
    lst.write_text("clips/a.avi 0\n")
    with pytest.raises(VideoLayoutError, match=rf"list\.txt:1: 'a\.avi' is not at .* and is in two places: "
                                               rf"{root}/a\.avi and {root}/brush_hair/a\.avi"):
        VideoDataModule(train_list=str(lst), labels=labels, root=str(root)).splits("fit")
    lst.write_text("nowhere.avi 0\n")
    with pytest.warns(UserWarning, match="1 of 1 videos listed"):
        dm = VideoDataModule(train_list=str(lst), labels=labels, root=str(root), num_workers=0)
        dm.splits("fit")
    dm.trainer = type("T", (), {"num_devices": 1})()
    with pytest.raises(VideoLayoutError, match=rf"looked for 'nowhere\.avi' below {root}: nowhere\.avi \(flat\); "
                                               r"brush hair/nowhere\.avi \(one folder per class\); "
                                               r"videos/nowhere\.avi, videos/brush hair/nowhere\.avi"):
        dm.train_dataloader()
    # every listed video where its list says: no index of the tree is built (Kinetics-size trees stay cheap)
    monkeypatch.setattr(VideoLocator, "_build_index", lambda self: pytest.fail("indexed"))
    lst.write_text("brush_hair/a.avi 0\n")
    assert VideoDataModule(train_list=str(lst), labels=labels, root=str(root)).splits("fit")[0].samples


def test_evaluation_without_the_official_split_files(public, tmp_path, capsys):
    """Only the public val1-3.txt: one `tc-clip: error:` line naming the folder and the options (main: a raw
    FileNotFoundError traceback); those options then evaluate the three splits."""
    root = tmp_path / "hmdb51"
    shutil.copytree(public["root"], root, ignore=shutil.ignore_patterns("testTrainMulti_7030_splits"))
    run = ["--trainer.default_root_dir", str(tmp_path / "runs"), *TINY, "--data.test_views", "1"]
    assert main(["test", "--config", str(CONFIGS / "zero_shot_eval_hmdb.yaml"), "--data.root", str(root), *run]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tc-clip: error: HMDB-51: the official split files")
    assert f"{root}/testTrainMulti_7030_splits" in err[0]
    assert "--data.test_list '[val1.txt, val2.txt, val3.txt]' --data.labels LABELS.csv" in err[0]
    suite = ["test", "--config", str(CONFIGS / "zero_shot_eval_suite.yaml"), "--data.hmdb51.root", str(root),
             "--data.ucf101", "null", "--data.k600", "null", *run]
    assert main(suite) == 1
    assert "--data.hmdb51.test_list '[val1.txt, val2.txt, val3.txt]' --data.hmdb51.labels" in capsys.readouterr().err
    vals = json.dumps([str(public["files"] / f"val{k}.txt") for k in (1, 2, 3)])
    assert main([*suite, "--data.hmdb51.test_list", vals, "--data.hmdb51.labels", public["labels"]]) == 0
    assert "hmdb51 " in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"--data\.val_list LIST --data\.labels"):
        HMDB51DataModule(root=str(root), protocol="few_shot").splits("validate")
    few_shot = HMDB51DataModule(root=str(root), protocol="few_shot", val_list=str(public["files"] / "val1.txt"),
                                labels=public["labels"])  # the README's few-shot route: the config's metric
    assert [s.name for s in few_shot.eval_sets("validate")] == ["hmdb51/split1"]
