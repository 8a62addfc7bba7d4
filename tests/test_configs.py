"""Every shipped config parses, instantiates against tiny datasets laid out like the real ones, and
carries SPEC section 5's recipe (epochs, warm-up, learning rates, global batch, views)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tc_clip.cli import build_cli
from tc_clip.data import synthetic

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# SPEC section 5: epochs, warm-up epochs, global batch, lr, lr_min, test views (temporal x crops)
RECIPE = {
    "zero_shot": (10, 5, 256, 8e-6, 8e-8, (2, 1)),
    "few_shot": (50, 5, 64, 2e-6, 2e-8, (2, 1)),
    "base2novel": (12, 2, 64, 3.33e-6, 3.33e-8, (2, 1)),
    "fully_supervised": (30, 5, 512, 2.2e-5, 2.2e-7, (4, 3)),
}

HMDB = ["brush_hair", "cartwheel", "catch", "chew"]
UCF = ["ApplyEyeMakeup", "BabyCrawling", "Basketball", "Biking"]
SSV2 = ["Putting something on a surface", "Pushing something from left to right",
        "Tearing something into two pieces", "Holding something"]
K400 = ["abseiling", "air drumming", "answering questions", "applauding"]
K600_NEW = ["arranging flowers", "bathing dog", "bouncing ball", "building lego"]


def protocol_of(name: str) -> str | None:
    for key in ("zero_shot_eval", "zero_shot", "few_shot", "base2novel", "fully_supervised"):
        if name.startswith(key) or name.startswith("vifi_clip_" + key):
            return key
    return None


def shipped() -> list[str]:
    """Complete run configs (model + data); overlays meant to follow another --config are left out."""
    out = []
    for p in sorted(CONFIGS.glob("*.yaml")):
        cfg = yaml.safe_load(p.read_text()) or {}
        if "model" in cfg and "data" in cfg:
            out.append(p.stem)
    return out


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(12, 48, 64, 3), dtype=np.uint8)
    src = {}
    for ext in ("avi", "mp4", "webm"):
        src[ext] = base / f"src.{ext}"
        synthetic.write_video(src[ext], frames, fps=10)

    def put(path: Path, ext: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src[ext], path)

    # HMDB-51: <class>/<video>.avi + testTrainMulti_7030_splits/<class>_test_split<N>.txt
    hmdb = base / "hmdb51"
    for c in HMDB:
        for k in range(3):
            put(hmdb / c / f"{c}_{k}.avi", "avi")
        for split in (1, 2, 3):
            f = hmdb / "testTrainMulti_7030_splits" / f"{c}_test_split{split}.txt"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("".join(f"{c}_{k}.avi {2 if k == split % 3 else 1}\n" for k in range(3)))
    # UCF-101: UCF-101/<Class>/v_*.avi + ucfTrainTestlist/
    ucf = base / "ucf101"
    lists = ucf / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(UCF)))
    for split in (1, 2, 3):
        train, test = [], []
        for i, c in enumerate(UCF):
            for k in range(3):
                rel = f"{c}/v_{c}_g0{k}_c01.avi"
                put(ucf / "UCF-101" / rel, "avi")
                if k == split % 3:
                    test.append(rel)
                else:
                    train.append(f"{rel} {i + 1}")
        (lists / f"trainlist0{split}.txt").write_text("\n".join(train) + "\n")
        (lists / f"testlist0{split}.txt").write_text("\n".join(test) + "\n")
    # SSv2: labels/{labels,train,validation}.json + 20bn-something-something-v2/<id>.webm
    ssv2 = base / "ssv2"
    (ssv2 / "labels").mkdir(parents=True)
    (ssv2 / "labels" / "labels.json").write_text(json.dumps({n: str(i) for i, n in enumerate(SSV2)}))
    entries = {"train": [], "validation": []}
    vid = 0
    for n in SSV2:
        words = n.split(" ")
        template = " ".join("[something]" if w == "something" else w for w in words)
        for split, count in (("train", 2), ("validation", 1)):
            for _ in range(count):
                vid += 1
                entries[split].append({"id": str(vid), "template": template, "label": n})
                put(ssv2 / "20bn-something-something-v2" / f"{vid}.webm", "webm")
    for split, e in entries.items():
        (ssv2 / "labels" / f"{split}.json").write_text(json.dumps(e))
    # Kinetics-400: annotations/{train,validate}.csv + <youtube_id>_<start>_<end>.mp4 anywhere below root
    k400 = base / "kinetics400"
    (k400 / "annotations").mkdir(parents=True)
    for split, count in (("train", 2), ("validate", 1)):
        rows = []
        for c in K400:
            for k in range(count):
                yt = f"{split[:2]}{c.replace(' ', '')[:6]}{k:02d}"
                rows.append({"label": c, "youtube_id": yt, "time_start": 0, "time_end": 10, "split": split})
                put(k400 / split / c.replace(" ", "_") / f"{yt}_000000_000010.mp4", "mp4")
        with open(k400 / "annotations" / f"{split}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["label", "youtube_id", "time_start", "time_end", "split"])
            w.writeheader()
            w.writerows(rows)
    # Kinetics-600 zero-shot splits: list files ('path label') + 'id,name' CSVs
    k600 = base / "kinetics600"
    for split in (1, 2, 3):
        names = K600_NEW[split - 1:] + K600_NEW[: split - 1]
        lines = []
        for i, c in enumerate(names):
            rel = f"videos/{c.replace(' ', '_')}_{split}.mp4"
            put(k600 / rel, "mp4")
            lines.append(f"{rel} {i}")
        (k600 / f"split{split}.txt").write_text("\n".join(lines) + "\n")
        labels = "id,name\n" + "".join(f"{i},{c}\n" for i, c in enumerate(names))
        (k600 / f"split{split}_labels.csv").write_text(labels)
    # LLM-rephrased names
    llm = base / "llm"
    llm.mkdir()
    for key, names in (("k400", K400), ("hmdb", HMDB), ("ucf", UCF), ("ssv2", SSV2)):
        rephrased = {str(i): f"a person doing {n}" for i, n in enumerate(names)}
        (llm / f"{key}.json").write_text(json.dumps(rephrased))
    return {"hmdb": hmdb, "ucf": ucf, "ssv2": ssv2, "k400": k400, "k600": k600, "llm": llm}


def dataset_of(name: str) -> str:
    for key in ("k400", "hmdb", "ucf", "ssv2", "k600"):
        if f"_{key}" in name:
            return key
    raise AssertionError(name)


def overrides(name: str, layouts: dict[str, Path], tmp: Path) -> list[str]:
    ds = dataset_of(name)
    args = [
        "--model.model_name", "tiny", "--model.pretrained", "null",
        "--model.config.num_frames", "8", "--model.config.num_context_tokens", "16",
        "--data.num_frames", "8", "--data.input_size", "64", "--data.num_workers", "0",
        "--data.root", str(layouts[ds]), "--data.split_dir", str(tmp / "splits"),
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true",
        "--trainer.default_root_dir", str(tmp / "runs"), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]
    if name.startswith("few_shot"):
        args += ["--data.shot", "2"]
    if name.endswith("_llm"):
        args += ["--data.llm_names", str(layouts["llm"] / f"{ds}.json"),
                 "--data.eval_llm_names", str(layouts["llm"] / f"{ds}.json")]
    if ds == "k600":
        k600 = layouts["k600"]
        args += ["--data.test_list", json.dumps([str(k600 / f"split{s}.txt") for s in (1, 2, 3)]),
                 "--data.test_labels", json.dumps([str(k600 / f"split{s}_labels.csv") for s in (1, 2, 3)])]
    return args


def test_every_protocol_has_a_config():
    names = set(shipped())
    expected = {"demo", "zero_shot_k400", "few_shot_hmdb", "few_shot_ucf", "few_shot_ssv2",
                "base2novel_k400", "base2novel_hmdb", "base2novel_ucf", "base2novel_ssv2",
                "fully_supervised_k400", "zero_shot_k400_llm", "vifi_clip_zero_shot_k400",
                "zero_shot_eval_hmdb", "zero_shot_eval_ucf", "zero_shot_eval_k600"}
    assert expected <= names
    assert {f"base2novel_{d}_llm" for d in ("k400", "hmdb", "ucf", "ssv2")} <= names


@pytest.mark.parametrize("name", [n for n in shipped() if protocol_of(n) in RECIPE])
def test_config_reproduces_spec_recipe(name):
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    epochs, warmup, batch, lr, lr_min, views = RECIPE[protocol_of(name)]
    tr, model, data = cfg["trainer"], cfg["model"], cfg["data"]["init_args"]
    assert tr["max_epochs"] == epochs and model["warmup_epochs"] == warmup
    global_batch = tr["devices"] * tr.get("num_nodes", 1) * data["batch_size"] * tr["accumulate_grad_batches"]
    assert global_batch == batch
    assert model["lr"] == pytest.approx(lr) and model["lr_min"] == pytest.approx(lr_min)
    assert (data["test_views"], data["test_crops"]) == views
    assert model["weight_decay"] == 0.001 and model["prompt_lr_mult"] == 10.0
    assert model["label_smoothing"] == 0.1 and (model["mixup_alpha"], model["cutmix_alpha"]) == (0.8, 1.0)
    assert data["num_frames"] == 16 and data["input_size"] == 224
    assert model["config"]["num_frames"] == 16 and tr["precision"] == "16-mixed"
    if name.startswith(("few_shot", "base2novel")):
        assert data["val_views"] == 2  # these protocols report the validation sets
    if name.startswith("vifi_clip"):
        assert model["config"]["use_tc"] is False and model["config"]["use_vp"] is False
        assert model["config"]["n_ctx"] == 0


@pytest.mark.parametrize("name", [n for n in shipped() if n != "demo"])
def test_config_instantiates_on_real_layout(name, layouts, tmp_path):
    sub = "test" if name.startswith("zero_shot_eval") else "fit"
    args = ["--config", str(CONFIGS / f"{name}.yaml"), *overrides(name, layouts, tmp_path)]
    cli = build_cli(args, run=False)
    dm, module = cli.datamodule, cli.model
    ds = dataset_of(name)
    expected_names = {"k400": K400, "hmdb": HMDB, "ucf": UCF, "ssv2": SSV2, "k600": None}[ds]
    if sub == "fit":
        train = dm.train_class_names
        if name.endswith("_llm"):
            assert all(n.startswith("a person doing") for n in train)
        elif name.startswith("base2novel"):
            assert train == expected_names[:2]
        else:
            assert train == expected_names
        sets = dm.eval_sets("validate")
        if name.startswith("base2novel"):
            assert [s.role for s in sets] == ["base", "novel"]
            assert len(sets[0].class_names) == 2 and len(sets[1].class_names) == 2
        else:
            assert len(sets) == 1 and len(sets[0].class_names) == 4
        assert module.hparams.lr > 0
    else:
        sets = dm.eval_sets("test")
        assert len(sets) == 3 and len({s.group for s in sets}) == 1 and sets[0].group
        assert all(len(s.class_names) == 4 for s in sets)
    assert cli.trainer.max_epochs >= 1


@pytest.mark.parametrize("name, sub, keys", [
    ("zero_shot_eval_hmdb", "test", ["test/hmdb51/top1_mean", "test/hmdb51/top1_std"]),
    ("base2novel_ucf", "validate", ["val/base_novel/hm", "val/base_novel/base", "val/base_novel/novel"]),
])
def test_protocol_summaries_logged(name, sub, keys, layouts, tmp_path):
    cli = build_cli(["--config", str(CONFIGS / f"{name}.yaml"), *overrides(name, layouts, tmp_path),
                     "--data.test_views", "1", "--data.val_views", "1"], run=False)
    run = cli.trainer.test if sub == "test" else cli.trainer.validate
    out = run(cli.model, datamodule=cli.datamodule)[0]
    for key in keys:
        assert key in out
    if sub == "validate":
        b, n = out["val/base_novel/base"], out["val/base_novel/novel"]
        assert out["val/base_novel/hm"] == pytest.approx(2 * b * n / (b + n) if b + n else 0.0)
        assert out["val/top1"] == pytest.approx(out["val/base_novel/hm"])
