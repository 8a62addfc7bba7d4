"""The ``tc-clip`` command end to end on the synthetic dataset: the demo config (fast settings), resume
with ``--ckpt_path last``, predict, argument errors, ``check-data``, and DDP (2 CPU processes, gloo)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from tc_clip.cli import main
from tc_clip.data import synthetic
from tc_clip.lightning import TCCLIPModule
from tc_clip.results import read_eval_records

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "configs" / "demo.yaml")
GEN = dict(num_classes=3, videos_per_class=4, val_per_class=3)  # 12 train, 9 val videos (odd on purpose)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic_cache")


def demo_args(cache: Path, root: Path, epochs: int = 1) -> list[str]:
    return [
        "--config", DEMO,
        "--data.cache_dir", str(cache),
        "--data.num_classes", str(GEN["num_classes"]),
        "--data.videos_per_class", str(GEN["videos_per_class"]),
        "--data.val_per_class", str(GEN["val_per_class"]),
        "--data.batch_size", "4",
        "--data.num_workers", "0",
        "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root),
    ]


def val_top1_key(metrics: dict) -> str:
    """The one ``val/{set}/top1`` metric of the demo's single validation set."""
    (key,) = [k for k in metrics if k.startswith("val/") and k.endswith("/top1")]
    return key


def read_metrics(version_dir: Path) -> dict[str, float]:
    """Last non-empty value of every column of a CSVLogger metrics.csv."""
    out: dict[str, float] = {}
    with open(version_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if v not in ("", None):
                    out[k] = float(v)
    return out


def test_demo_fit_validate_resume(cache, tmp_path):
    root = tmp_path / "runs"
    assert main(["fit", *demo_args(cache, root, epochs=2)]) == 0
    v0 = root / "version_0"
    files = ("config.yaml", "metrics.csv", "hparams.yaml", "checkpoints/last.ckpt", "checkpoints/config.yaml")
    for rel in files:
        assert (v0 / rel).is_file(), rel
    assert (v0 / "checkpoints/best.ckpt").is_file() and list(v0.glob("events.out.tfevents.*"))
    metrics = read_metrics(v0)
    top1 = val_top1_key(metrics)
    assert {top1, top1.replace("/top1", "/top5"), "train/loss_epoch"} <= set(metrics)
    assert "val/top1" not in metrics and not [k for k in metrics if k.endswith(("/videos", "/skipped"))]
    assert top1 == "val/synthetic/val/top1"  # a clean set name, not val/val/top1
    # the saved config names the metric that selected best.ckpt (tc-clip report reads it)
    assert yaml.safe_load((v0 / "config.yaml").read_text())["checkpoint"]["monitor"] == top1
    records = read_eval_records(v0)  # counts live in the results file, one record per evaluation epoch
    assert [r["epoch"] for r in records] == [0, 1] and records[0]["sets"][0]["videos"] == 9
    assert any(k.startswith("lr") for k in metrics)  # LearningRateMonitor
    steps_per_epoch = 3  # 12 videos, batch 4
    last = torch.load(v0 / "checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    assert last["epoch"] == 1 and last["global_step"] == 2 * steps_per_epoch

    # resume: epoch, optimiser and scheduler continue where last.ckpt stopped
    assert main(["fit", *demo_args(cache, root, epochs=3), "--ckpt_path", "last"]) == 0
    resumed = torch.load(root / "version_0/checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    assert resumed["epoch"] == 2 and resumed["global_step"] == 3 * steps_per_epoch
    adam_steps = {float(s["step"]) for s in resumed["optimizer_states"][0]["state"].values()}
    assert adam_steps == {3.0 * steps_per_epoch}
    assert resumed["lr_schedulers"][0]["last_epoch"] == 3 * steps_per_epoch

    # validate the newest last.ckpt
    assert main(["validate", *demo_args(cache, root), "--ckpt_path", "last"]) == 0
    assert read_eval_records(root / "version_1")[0]["sets"][0]["videos"] == 9


def test_predict_writes_csv(cache, tmp_path):
    root = tmp_path / "runs"
    assert main(["fit", *demo_args(cache, root), "--trainer.limit_train_batches", "1"]) == 0
    ckpt = root / "version_0/checkpoints/last.ckpt"
    data_root = next(p for p in cache.iterdir() if (p / "labels.csv").is_file())
    out = tmp_path / "preds.json"
    args = [
        "predict", "--ckpt_path", str(ckpt), "--trainer.default_root_dir", str(tmp_path / "pred"),
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--model.model_name", "tiny",
        "--data", "tc_clip.data.VideoDataModule",
        "--data.predict_list", str(data_root / "videos"),
        "--data.labels", str(data_root / "labels.csv"),
        "--data.num_frames", "8", "--data.input_size", "64", "--data.num_workers", "0",
        "--data.batch_size", "8", "--model.predict_top_k", "2",
    ]  # the checkpoint was trained with predict_top_k 5: the command line wins
    assert main(args) == 0
    written = list((tmp_path / "pred").rglob("predictions.csv"))
    assert len(written) == 1
    rows = list(csv.DictReader(open(written[0])))
    assert len(rows) == 3 * (4 + 3)
    assert set(rows[0]) >= {"path", "pred_1", "score_1", "pred_2", "score_2"}
    assert not [k for k in rows[0] if k.startswith(("pred_3", "score_3"))]
    assert rows[0]["pred_1"] in synthetic.class_names(3)
    assert float(rows[0]["score_1"]) >= float(rows[0]["score_2"])
    # JSON through an explicitly configured writer
    assert main(args + ["--trainer.callbacks+=tc_clip.callbacks.PredictionWriter",
                        "--trainer.callbacks.output_path", str(out)]) == 0
    import json

    assert len(json.loads(out.read_text())) == 21
    # without a labels file: the vocabulary comes from the checkpoint (the training class names)
    no_labels = [a for a in args if a not in ("--data.labels", str(data_root / "labels.csv"))]
    assert main(no_labels + ["--trainer.default_root_dir", str(tmp_path / "pred2")]) == 0
    rows = list(csv.DictReader(open(next((tmp_path / "pred2").rglob("predictions.csv")))))
    assert len(rows) == 21 and rows[0]["pred_1"] in synthetic.class_names(3)
    assert rows[0]["label"] == "-1"


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--model.config.use_tcc", "true"], "use_tcc"),
        (["--trainer.max_epoch", "3"], "max_epoch"),
        (["--model.lr", "fast"], "lr"),
        (["--data.num_clases", "3"], "num_clases"),
    ],
)
def test_mistyped_keys_fail_by_name_before_building(extra, needle, capsys, tmp_path):
    start = time.perf_counter()
    with pytest.raises(SystemExit) as err:
        main(["fit", "--config", DEMO, "--trainer.default_root_dir", str(tmp_path), *extra])
    assert err.value.code != 0
    assert needle in capsys.readouterr().err
    assert time.perf_counter() - start < 20
    assert not (tmp_path / "version_0").exists()


def test_few_shot_without_shot_fails_before_building(capsys):
    start = time.perf_counter()
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs" / "few_shot_hmdb.yaml")])
    assert "--data.train_list" in capsys.readouterr().err
    assert time.perf_counter() - start < 20  # no ViT-B/16 was built


def test_print_config(capsys):
    with pytest.raises(SystemExit) as err:
        main(["fit", "--config", DEMO, "--data.num_classes", "7", "--print_config"])
    assert err.value.code in (0, None)
    text = capsys.readouterr().out
    assert "SyntheticVideoDataModule" in text and "num_context_tokens: 16" in text
    assert "num_classes: 7" in text
    assert "monitor: null" in text and "global_batch_size:" in text


def test_check_data_takes_the_fit_options(monkeypatch, cache, capsys):
    """check-data parses like fit (--config, --data.*, --data.init_args.*), builds only the data module."""
    seen = {}

    class Report:
        ok = False

        def __str__(self):
            return "2 videos missing"

    def run_checks(dm, stages):
        seen.update(dm=dm, stages=stages)
        return Report()

    fake = types.ModuleType("tc_clip.data.check")
    fake.run_checks = run_checks
    monkeypatch.setitem(sys.modules, "tc_clip.data.check", fake)
    built = []
    monkeypatch.setattr(TCCLIPModule, "_build_model", staticmethod(lambda *a: built.append(1)))
    args = ["--config", DEMO, "--data.cache_dir", str(cache), "--data.init_args.num_classes", "3",
            "--data.batch_size", "5", "--stages", "fit", "validate"]
    monkeypatch.setattr(sys, "argv", ["tc-clip", "check-data", *args])  # as from a console
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["check-data", *args]) == 1
    assert not [w for w in caught if "args parameter" in str(w.message)]  # no "args and command line" noise
    assert type(seen["dm"]).__name__ == "SyntheticVideoDataModule" and not built
    assert seen["dm"].gen_kwargs["num_classes"] == 3 and seen["dm"].batch_size == 5
    assert seen["stages"] == ["fit", "validate"]
    assert "2 videos missing" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the fit parser's checks: a mistyped key fails by name
        main(["check-data", "--config", DEMO, "--data.num_clases", "3"])
    assert "num_clases" in capsys.readouterr().err


def test_pack_and_report_are_wired(monkeypatch, cache, tmp_path, capsys):
    calls = {}
    shards = types.ModuleType("tc_clip.data.shards")
    shards.pack = lambda dm, output_dir, stage="fit": calls.setdefault("pack", (dm, output_dir, stage)) and {
        "videos": 12, "output_dir": output_dir}
    monkeypatch.setitem(sys.modules, "tc_clip.data.shards", shards)
    out = str(tmp_path / "shards")
    assert main(["pack", "--config", DEMO, "--data.cache_dir", str(cache), "--output_dir", out,
                 "--stage", "validate"]) == 0
    dm, output_dir, stage = calls["pack"]
    assert type(dm).__name__ == "SyntheticVideoDataModule" and output_dir == out and stage == "validate"
    assert "videos: 12" in capsys.readouterr().out
    import tc_clip.cli.report

    monkeypatch.setattr(tc_clip.cli.report, "main", lambda argv: calls.setdefault("report", argv) and 0)
    assert main(["report", "runs/a", "runs/b", "--format", "csv"]) == 0
    assert calls["report"] == ["runs/a", "runs/b", "--format", "csv"]


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tc_clip.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def test_ddp_two_cpu_processes_match_one(cache, tmp_path):
    """fit + validate with strategy=ddp on 2 CPU processes (gloo); the validation metrics equal a
    1-process validation of the same checkpoint, although the 9 videos are padded to 10 by the
    distributed sampler."""
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    fit_root = tmp_path / "fit"
    _run(["fit", *demo_args(cache, fit_root), *ddp], tmp_path)
    fit_dir = fit_root / "version_0"
    ckpt = fit_dir / "checkpoints/last.ckpt"
    fit_metrics = read_metrics(fit_dir)
    assert read_eval_records(fit_dir)[-1]["sets"][0]["videos"] == 9

    one_root, two_root = tmp_path / "val1", tmp_path / "val2"
    one_proc = ["--trainer.devices", "1"]
    _run(["validate", *demo_args(cache, one_root), "--ckpt_path", str(ckpt), *one_proc], tmp_path)
    _run(["validate", *demo_args(cache, two_root), "--ckpt_path", str(ckpt), *ddp], tmp_path)
    one, two = read_metrics(one_root / "version_0"), read_metrics(two_root / "version_0")
    top1 = val_top1_key(one)
    for key in (top1, top1.replace("/top1", "/top5")):
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
        assert fit_metrics[key] == pytest.approx(one[key], abs=1e-6), key
    assert read_eval_records(two_root / "version_0")[0]["sets"][0]["videos"] == 9


def test_test_subcommand_with_release_checkpoint(cache, tmp_path):
    """`tc-clip test --model.release_checkpoint X.pth --model.pretrained CLIP` (tiny stand-ins)."""
    import open_clip

    from release_helpers import to_release_layout
    from tc_clip.cli import build_cli
    from tc_clip.model import TCCLIP, TINY_CLIP_CFG, TCCLIPConfig

    tiny = TCCLIP.from_clip("tiny", config=TCCLIPConfig(num_frames=8, num_context_tokens=16, merge_step=40))
    release = tmp_path / "release.pth"
    torch.save({"model": to_release_layout(tiny), "epoch": 9, "max_accuracy": 0.0}, release)
    clip_file = tmp_path / "tiny_clip.pt"
    torch.save(open_clip.CLIP(**TINY_CLIP_CFG).state_dict(), clip_file)
    cli = build_cli([*demo_args(cache, tmp_path / "runs"), "--model.release_checkpoint", str(release),
                     "--model.pretrained", str(clip_file)], run=False)
    assert torch.equal(cli.model.model.prompt_ctx, tiny.prompt_ctx)
    out = cli.trainer.test(cli.model, datamodule=cli.datamodule)[0]
    (key,) = [k for k in out if k.endswith("/top1")]
    assert 0.0 <= out[key] <= 1.0 and read_eval_records(cli.trainer.log_dir)[0]["sets"][0]["videos"] == 9


def test_predict_on_the_demo_config(cache, tmp_path):
    """The demo's synthetic data module classifies a folder of videos given as ``--data.predict_list``."""
    root = tmp_path / "runs"
    assert main(["fit", *demo_args(cache, root), "--trainer.limit_train_batches", "1"]) == 0
    videos = next(p for p in cache.iterdir() if (p / "labels.csv").is_file()) / "videos"
    ckpt = root / "version_0/checkpoints/last.ckpt"
    assert main(["predict", *demo_args(cache, root), "--ckpt_path", str(ckpt),
                 "--data.predict_list", str(videos)]) == 0
    rows = list(csv.DictReader(open(next(root.rglob("predictions.csv")))))
    assert len(rows) == 3 * (4 + 3) and rows[0]["pred_1"] in synthetic.class_names(3)


# --------------------------------------------------------------------------- the machine at hand


def test_precision_and_accumulation_follow_the_machine(cache, tmp_path, capsys):
    from tc_clip.cli import build_cli

    base = [*demo_args(cache, tmp_path / "runs"), "--trainer.precision", "null", "--trainer.accelerator", "auto",
            "--trainer.devices", "auto"]
    cli = build_cli([*base, "--global_batch_size", "12"], run=False)
    assert cli.trainer.precision == "32-true"  # CPU
    assert cli.trainer.world_size == 1 and cli.trainer.accumulate_grad_batches == 3  # 12 = 4 x 1 x 3
    for extra, needle in ((["--global_batch_size", "10"], "not a multiple of data.batch_size 4"),
                          (["--global_batch_size", "12", "--trainer.accumulate_grad_batches", "2"],
                           "trainer.accumulate_grad_batches 2 contradicts global_batch_size 12")):
        with pytest.raises(SystemExit):
            build_cli([*base, *extra], run=False)
        assert needle in capsys.readouterr().err


def test_auto_precision_on_gpus(monkeypatch):
    from tc_clip.cli.options import auto_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert auto_precision("auto") == "bf16-mixed" and auto_precision("gpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert auto_precision(None) == "16-mixed"
    assert auto_precision("cpu") == "32-true"


def test_data_values_drive_the_model(cache, tmp_path, capsys):
    from tc_clip.cli import build_cli

    cli = build_cli([*demo_args(cache, tmp_path / "runs"), "--data.num_frames", "6"], run=False)
    assert cli.model.config.num_frames == 6 == cli.datamodule.num_frames and cli.model.hparams.input_size == 64
    with pytest.raises(SystemExit):  # one value drives both: the model's copy is not a second option
        build_cli([*demo_args(cache, tmp_path / "runs"), "--model.config.num_frames", "4"], run=False)
    assert "data.init_args.num_frames" in capsys.readouterr().err
    start = time.perf_counter()
    with pytest.raises(ValueError, match="data.input_size 32 does not fit model 'tiny'.*64x64"):
        build_cli([*demo_args(cache, tmp_path / "runs"), "--data.input_size", "32"], run=False)
    assert time.perf_counter() - start < 20 and not (tmp_path / "runs").exists()  # before any log folder


def test_fit_shorter_than_the_validation_interval_still_validates(cache, tmp_path, capsys):
    root = tmp_path / "runs"
    assert main(["fit", *demo_args(cache, root, epochs=2), "--trainer.check_val_every_n_epoch", "5"]) == 0
    v0 = root / "version_0"
    assert [r["epoch"] for r in read_eval_records(v0)] == [1] and (v0 / "checkpoints/best.ckpt").is_file()
    out = capsys.readouterr().out
    assert "fit summary" in out and "at epoch 1" in out and str(v0 / "checkpoints/best.ckpt") in out
    assert f"logs: {v0}" in out
    # which decoder read the training clips: 2 epochs of 12 videos in batches of 4, each clip counted once
    (line,) = [x for x in out.splitlines() if "training clips decoded by:" in x]
    counts = dict(part.split() for part in line.split(": ", 1)[1].split(", "))
    assert set(counts) <= {"pyav", "torchcodec"} and sum(map(int, counts.values())) == 2 * 12


@pytest.fixture
def trained_with_moved_clip(cache, tmp_path):
    """A demo checkpoint fine-tuned from a tiny CLIP file that has since moved (old path gone)."""
    import open_clip

    from tc_clip.model import TINY_CLIP_CFG

    old, new = tmp_path / "old" / "clip.pt", tmp_path / "new" / "clip.pt"
    old.parent.mkdir()
    new.parent.mkdir()
    torch.save(open_clip.CLIP(**TINY_CLIP_CFG).state_dict(), old)
    root = tmp_path / "runs"
    assert main(["fit", *demo_args(cache, root), "--trainer.limit_train_batches", "1",
                 "--model.pretrained", str(old)]) == 0
    old.rename(new)
    return root / "version_0/checkpoints/best.ckpt", new


def test_ckpt_path_keeps_free_options_and_refuses_architecture(cache, tmp_path, trained_with_moved_clip, capsys):
    import yaml

    ckpt, clip = trained_with_moved_clip
    root = tmp_path / "t"
    assert main(["validate", *demo_args(cache, root), "--ckpt_path", str(ckpt), "--model.pretrained", str(clip),
                 "--model.views_per_forward", "3"]) == 0
    hparams = yaml.safe_load((root / "version_0/hparams.yaml").read_text())
    assert hparams["pretrained"] == str(clip) and hparams["views_per_forward"] == 3
    for sub, extra, needle in (
        ("test", ["--model.config.n_ctx", "6"], "model.config.n_ctx: 6 contradicts the checkpoint's 4"),
        ("validate", ["--model.config.use_tc", "false"], "model.config.use_tc: False contradicts"),
        # resuming fit continues the checkpoint's run: another learning rate is refused, not ignored
        ("fit", ["--model.lr", "0.5"], "model.lr (0.001 -> 0.5)"),
    ):
        with pytest.raises(SystemExit) as exc:
            main([sub, *demo_args(cache, root), "--ckpt_path", str(ckpt), *extra])
        err = capsys.readouterr().err + str(exc.value.code)
        assert needle in err and str(ckpt) in err


def test_wise_ft_test_command_with_a_moved_clip_file(cache, tmp_path, trained_with_moved_clip, capsys):
    """The README's `tc-clip test --config ... --config configs/zero_shot_k400_wise.yaml --model.pretrained NEW
    --ckpt_path best.ckpt`: the checkpoint's training-machine path no longer exists."""
    ckpt, clip = trained_with_moved_clip
    root = tmp_path / "wise"
    assert main(["test", *demo_args(cache, root), "--config", str(REPO / "configs/zero_shot_k400_wise.yaml"),
                 "--model.pretrained", str(clip), "--ckpt_path", str(ckpt)]) == 0
    (record,) = read_eval_records(root / "version_0")
    assert record["stage"] == "test" and record["ckpt_path"] == str(ckpt) and record["sets"][0]["videos"] == 9
    out = capsys.readouterr().out  # one results table for the stage, not Lightning's one per dataloader
    assert out.count("test results") == 1 and "Test metric" not in out


def test_unreadable_training_video_is_replaced_counted_and_reported(tmp_path, capsys):
    """A long run survives a bad training video: it is replaced, named in a warning and counted in the summary."""
    from tc_clip.cli.data_commands import build_datamodule
    from tc_clip.data import BadVideoWarning

    cache = tmp_path / "cache"
    dm = build_datamodule(demo_args(cache, tmp_path / "runs"))  # the data module this fit will use
    dm.prepare_data()
    first = Path(dm.root) / Path(dm.train_list).read_text().split()[0]
    first.write_bytes(b"\x00 not a video")
    with warnings.catch_warnings(record=True) as caught:  # (pytest.warns would re-emit Lightning's own)
        warnings.simplefilter("always", BadVideoWarning)
        assert main(["fit", *demo_args(cache, tmp_path / "runs")]) == 0
    assert [w for w in caught if issubclass(w.category, BadVideoWarning) and first.name in str(w.message)]
    assert "unreadable training videos replaced by others: 1 " in capsys.readouterr().out
