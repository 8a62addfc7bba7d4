"""Every shipped config parses, instantiates against tiny datasets laid out like the real ones, and
carries SPEC section 5's recipe (epochs, warm-up, learning rates, global batch, views)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tc_clip.cli import build_cli
from tc_clip.data import synthetic
from tc_clip.results import read_eval_records

REPO = Path(__file__).resolve().parents[2]
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
        "--model.model_name", "tiny", "--model.pretrained", "null", "--model.config.num_context_tokens", "16",
        "--data.num_frames", "8", "--data.input_size", "64", "--data.num_workers", "0",
        "--data.root", str(layouts[ds]), "--data.split_dir", str(tmp / "splits"),
        "--trainer.default_root_dir", str(tmp / "runs"), "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--global_batch_size", "8",
    ]
    if name.startswith("few_shot"):
        args += ["--data.shot", "2"]
    if name.startswith("base2novel"):  # 4 classes: the published split of the real benchmark does not apply
        names = {"k400": K400, "hmdb": HMDB, "ucf": UCF, "ssv2": SSV2}[ds]
        args += ["--data.base_classes", json.dumps(names[:2]), "--data.shot", "2"]
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
    # the machine at hand: no GPU count, precision or accumulation written into the config
    assert cfg["global_batch_size"] == batch and "accumulate_grad_batches" not in tr
    assert tr["accelerator"] == "auto" and tr["devices"] == "auto" and tr["precision"] is None
    assert model.get("lr_schedule", "release") == "release"
    assert model["lr"] == pytest.approx(lr) and model["lr_min"] == pytest.approx(lr_min)
    assert (data["test_views"], data["test_crops"]) == views
    assert model["weight_decay"] == 0.001 and model["prompt_lr_mult"] == 10.0
    assert model["label_smoothing"] == 0.1 and (model["mixup_alpha"], model["cutmix_alpha"]) == (0.8, 1.0)
    assert data["num_frames"] == 16 and data["input_size"] == 224
    assert "num_frames" not in (model.get("config") or {})  # linked from data.num_frames
    assert (model.get("config") or {}).get("context_length", 30) == (77 if name.endswith("_llm") else 30)
    bench = {"k400": "k400", "hmdb": "hmdb51", "ucf": "ucf101", "ssv2": "ssv2"}[dataset_of(name)]
    monitor = {"zero_shot": "val/k400/val/top1", "fully_supervised": "val/k400/val/top1",
               "base2novel": f"val/{bench}/base/top1",
               "few_shot": f"val/{bench}/{'val' if bench == 'ssv2' else 'split1'}/top1"}[protocol_of(name)]
    assert cfg["checkpoint"]["monitor"] == monitor
    # eval_results.jsonl records the protocol, and the report tables the run under it
    assert data.get("protocol", "fully_supervised") == protocol_of(name).replace("base2novel", "base_to_novel")
    if name.startswith("base2novel"):
        assert tr["check_val_every_n_epoch"] == 1  # base accuracy every epoch (SPEC 5b)
    if name.startswith(("few_shot", "base2novel")):
        assert data["val_views"] == 2  # these protocols report the validation sets
    if name.startswith("vifi_clip"):
        assert model["config"]["use_tc"] is False and model["config"]["use_vp"] is False
        assert model["config"]["n_ctx"] == 0


@pytest.mark.parametrize("name", [n for n in shipped() if n not in ("demo", "zero_shot_eval_suite")])
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
    if protocol_of(name) in ("zero_shot", "zero_shot_eval", "fully_supervised"):
        assert dm.describe()["protocol"] == protocol_of(name).removesuffix("_eval")


@pytest.mark.parametrize("name, sub, keys", [
    ("zero_shot_eval_hmdb", "test", ["top1_mean", "top1_std"]),
    ("base2novel_ucf", "validate", ["hm", "base", "novel"]),
])
def test_protocol_summaries_logged(name, sub, keys, layouts, tmp_path):
    cli = build_cli(["--config", str(CONFIGS / f"{name}.yaml"), *overrides(name, layouts, tmp_path),
                     "--data.test_views", "1", "--data.val_views", "1"], run=False)
    run = cli.trainer.test if sub == "test" else cli.trainer.validate
    out = run(cli.model, datamodule=cli.datamodule)[0]
    prefix = "test" if sub == "test" else "val"
    group = cli.datamodule.eval_sets(sub)[0].group or "base_novel"  # an ungrouped base/novel pair
    for key in keys:
        assert f"{prefix}/{group}/{key}" in out
    assert f"{prefix}/top1" not in out  # no unnamed alias: the harmonic mean is not called top1
    if sub == "validate":
        b, n = out[f"val/{group}/base"], out[f"val/{group}/novel"]
        assert out[f"val/{group}/hm"] == pytest.approx(2 * b * n / (b + n) if b + n else 0.0)


# Training-set sizes of the paper's runs: (videos, per-device batch 8 on one device) -> steps per epoch.
# few-shot HMDB-51 2-shot 102 videos: 12 batches of 8, 8 per global batch of 64 -> 1 step per epoch (SPEC 5b);
# base-to-novel HMDB-51 26 base classes x 16 = 416 videos -> 6 steps; K-400 train 240,436 videos -> 939 steps
# at 256 and 469 at 512.
TRAIN_VIDEOS = {"zero_shot": 240_436, "few_shot": 102, "base2novel": 416, "fully_supervised": 240_436}
STEPS_PER_EPOCH = {"zero_shot": 939, "few_shot": 1, "base2novel": 6, "fully_supervised": 469}


class _Loop:
    def __init__(self, batches):
        self.max_batches = batches


class _StubTrainer:
    """What configure_optimizers reads from a Trainer, with Lightning's stepping-batches formula."""

    def __init__(self, batches: int, accumulate: int, epochs: int):
        self.fit_loop, self.accumulate_grad_batches, self.max_epochs = _Loop(batches), accumulate, epochs
        self.state = type("State", (), {"fn": "fit"})()
        self.train_dataloader = object()

    @property
    def num_training_batches(self):
        return self.fit_loop.max_batches

    @property
    def estimated_stepping_batches(self):
        return math.ceil(self.num_training_batches / self.accumulate_grad_batches) * self.max_epochs


@pytest.mark.parametrize("name", ["zero_shot_k400", "few_shot_hmdb", "base2novel_hmdb", "fully_supervised_k400"])
def test_learning_rate_at_warmup_end_midpoint_and_last_step(name):
    """SPEC 5b: step t < W gets base*t/W; t >= W gets lr_min + (base - lr_min)/2 (1 + cos(pi t / S)), with
    the prompt group at 10x base and the same absolute lr_min; checked at W - 1, W, S/2 and S - 1."""
    from tc_clip.lightning import TCCLIPModule
    from tc_clip.model import TCCLIPConfig

    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    protocol, model = protocol_of(name), cfg["model"]
    epochs, warm_epochs, global_batch, base, low, _ = RECIPE[protocol]
    per_device = cfg["data"]["init_args"]["batch_size"]
    module = TCCLIPModule(model_name="tiny", config=TCCLIPConfig(num_frames=2, num_context_tokens=16),
                          lr=model["lr"], lr_min=model["lr_min"], warmup_epochs=model["warmup_epochs"],
                          prompt_lr_mult=model["prompt_lr_mult"])
    module._trainer = _StubTrainer(TRAIN_VIDEOS[protocol] // per_device, global_batch // per_device, epochs)
    sched = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    steps = STEPS_PER_EPOCH[protocol] * epochs
    warm = STEPS_PER_EPOCH[protocol] * warm_epochs
    names = [g["name"] for g in sched.optimizer.param_groups]
    assert names == ["prompt", "base"]
    for group, peak in zip(sched.lr_lambdas, (10 * base, base), strict=True):
        assert (group.warmup_steps, group.total_steps) == (warm, steps)

        def lr(t, group=group, peak=peak):
            return group(t) * peak

        assert lr(warm - 1) == pytest.approx(peak * (warm - 1) / warm, rel=1e-9)
        cos = low + 0.5 * (peak - low) * (1 + math.cos(math.pi * warm / steps))
        assert lr(warm) == pytest.approx(cos, rel=1e-9)  # the drop at the end of the warm-up
        mid = low + 0.5 * (peak - low) * (1 + math.cos(math.pi * (steps // 2) / steps))
        assert lr(steps // 2) == pytest.approx(mid, rel=1e-9)
        last = low + 0.5 * (peak - low) * (1 + math.cos(math.pi * (steps - 1) / steps))
        assert lr(steps - 1) == pytest.approx(last, rel=1e-9)
    # a few absolute values (base group)
    base_lr = lambda t: sched.lr_lambdas[1](t) * base  # noqa: E731
    if protocol == "zero_shot":  # W = S/2: the rate falls from 8e-6 to (8e-6 + 8e-8) / 2 at the warm-up end
        assert base_lr(warm) == pytest.approx(4.04e-6) and base_lr(steps // 2) == pytest.approx(4.04e-6)
    if protocol == "few_shot":  # 50 steps in all, 5 of warm-up
        assert (warm, steps) == (5, 50)
        assert base_lr(25) == pytest.approx(1.01e-6) and base_lr(49) == pytest.approx(2.1953e-8, rel=1e-3)
    if protocol == "base2novel":
        assert (warm, steps) == (12, 72)


def test_few_shot_config_fits_on_cpu_with_data_options_and_a_small_model(layouts, tmp_path, capsys, caplog):
    """`tc-clip fit --config configs/few_shot_hmdb.yaml` with the data options, a small model and a run length
    that fits a test: accelerator/devices/precision resolve to this CPU, accumulation from global_batch_size."""
    from tc_clip.cli import main

    root = tmp_path / "runs"
    # the public files' shape: a 2-shot list (used as it is) and its labels CSV
    (tmp_path / "labels.csv").write_text("id,name\n" + "".join(f"{i},{c}\n" for i, c in enumerate(HMDB)))
    shots = "".join(f"{c}/{c}_{k}.avi {i}\n" for i, c in enumerate(HMDB) for k in (0, 2))
    (tmp_path / "train1_few_shot_2.txt").write_text(shots)
    args = ["fit", "--config", str(CONFIGS / "few_shot_hmdb.yaml"),
            "--data.root", str(layouts["hmdb"]), "--data.train_list", str(tmp_path / "train1_few_shot_2.txt"),
            "--data.labels", str(tmp_path / "labels.csv"),
            "--model.model_name", "tiny", "--model.pretrained", "null", "--data.input_size", "64",
            "--data.num_frames", "8", "--data.num_workers", "0", "--trainer.log_every_n_steps", "1",
            "--trainer.max_epochs", "1", "--global_batch_size", "4", "--data.batch_size", "2",
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false"]
    assert main(args) == 0
    assert read_eval_records(root / "version_0")[-1]["meta"]["shot"] == 2  # K read from the list
    saved = yaml.safe_load((root / "version_0" / "config.yaml").read_text())
    assert saved["trainer"]["precision"] == "32-true" and saved["global_batch_size"] == 4
    assert "2 per device x 1 devices x 2 accumulation = 4" in caplog.text
    ckpt = torch.load(root / "version_0/checkpoints/best.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 2  # 8 videos, 4 batches of 2, 2 per optimiser step
    # the config's monitored metric exists (the best checkpoint was kept by it) and the summary names it
    assert "best val/hmdb51/split1/top1 = " in capsys.readouterr().out


def test_base_to_novel_novel_set_at_the_best_base_epoch(layouts, tmp_path, capsys):
    """Base validated every epoch (the novel loader is not even iterated during fit); after fit the best-base
    checkpoint is evaluated on base and novel, logging novel top-1 and the harmonic mean at that epoch."""
    from tc_clip.cli import main

    root = tmp_path / "runs"
    args = ["fit", "--config", str(CONFIGS / "base2novel_ucf.yaml"), *overrides("base2novel_ucf", layouts, tmp_path),
            "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "2", "--data.batch_size", "2",
            "--global_batch_size", "2", "--data.val_views", "1", "--checkpoint.monitor", "null",
            "--trainer.log_every_n_steps", "1"]
    assert main(args) == 0
    records = read_eval_records(root / "version_0")
    assert len(records) == 3  # two epochs of base, then base + novel with best.ckpt
    for r in records[:2]:
        assert [s["role"] for s in r["sets"]] == ["base"] and not r["summary"]
    final = records[2]
    assert [s["role"] for s in final["sets"]] == ["base", "novel"] and final["ckpt_path"].endswith("best.ckpt")
    group = final["sets"][0]["group"] or "base_novel"  # summary.base_novel_summary names an ungrouped pair so
    base_scores = [r["sets"][0]["top1"] for r in records[:2]]
    best_epoch = int(base_scores[1] > base_scores[0])  # ModelCheckpoint keeps the first of equal scores
    assert final["epoch"] == best_epoch and final["sets"][0]["top1"] == pytest.approx(base_scores[best_epoch])
    b, n = final["sets"][0]["top1"], final["sets"][1]["top1"]
    assert final["summary"][f"{group}/hm"] == pytest.approx(2 * b * n / (b + n) if b + n else 0.0)
    with open(root / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    novel = [r for r in rows if r.get(f"val/{group}/hm")]
    assert len(novel) == 1 and novel[0][f"val/{final['sets'][1]['name']}/top1"]
    out = capsys.readouterr().out
    assert f"val/{group}/hm = " in out and "fit summary" in out


def test_zero_shot_suite_config_evaluates_nine_splits_in_one_run(layouts, tmp_path, capsys):
    """configs/zero_shot_eval_suite.yaml: HMDB-51, UCF-101 and K-600, three splits each, in one `tc-clip test`
    that prints mean +- std per benchmark (the paper's row) and writes one results record."""
    from tc_clip.cli import main

    k600 = layouts["k600"]
    root = tmp_path / "runs"
    args = ["test", "--config", str(CONFIGS / "zero_shot_eval_suite.yaml"),
            "--data.hmdb51.root", str(layouts["hmdb"]), "--data.ucf101.root", str(layouts["ucf"]),
            "--data.k600.root", str(k600),
            "--data.k600.test_list", json.dumps([str(k600 / f"split{s}.txt") for s in (1, 2, 3)]),
            "--data.k600.test_labels", json.dumps([str(k600 / f"split{s}_labels.csv") for s in (1, 2, 3)]),
            "--data.num_frames", "8", "--data.input_size", "64", "--data.num_workers", "0", "--data.test_views", "1",
            "--model.model_name", "tiny", "--model.pretrained", "null", "--model.config.num_context_tokens", "16",
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false"]
    assert main(args) == 0
    (record,) = read_eval_records(root / "version_0")
    assert [s["name"] for s in record["sets"]] == [f"{b}/split{k}" for b in ("hmdb51", "ucf101", "k600")
                                                  for k in (1, 2, 3)]
    assert {f"{b}/top1_mean" for b in ("hmdb51", "ucf101", "k600")} <= set(record["summary"])
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("zero-shot top-1 (mean ± std over splits):")]
    assert [part.split()[0] for part in row.split(": ", 1)[1].split(" | ")] == ["hmdb51", "ucf101", "k600"]
    mean = 100 * record["summary"]["hmdb51/top1_mean"]
    assert f"hmdb51 {mean:.2f} ± " in row
