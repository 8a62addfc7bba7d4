"""Weight-space ensembling callbacks (SPEC §6): WeightSpaceEnsemble (swap, restore, checkpoints),
WeightSpaceSweep (files equal to single-ratio runs, the plot), the configs from the CLI (and their old class
paths), and bad input. Tiny random CLIP, 64x64 frames, synthetic videos."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from tc_clip.callbacks import WeightSpaceEnsemble, WeightSpaceSweep
from tc_clip.data import EvalSetInfo, VideoDataModule, synthetic
from tc_clip.lightning import TCCLIPModule
from tc_clip.model import TCCLIPConfig, wise
from wise_helpers import TINY, check_png, fine_tune, save_tiny_clip

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def clip_file(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")


def finetuned_module(clip_file: Path, seed: int = 1, **config) -> TCCLIPModule:
    """A module built from the CLIP file whose every trainable weight then moved ("fine-tuned")."""
    module = TCCLIPModule(
        model_name="tiny",
        pretrained=str(clip_file),
        config=TCCLIPConfig(**{**TINY, **config}),
        class_names=["RunFast", "jump_high", "Swim"],
    )
    return fine_tune(module, seed)


def state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.model.state_dict().items()}


class Clips(Dataset):
    def __init__(self, n: int, num_classes: int, frames: int = 4):
        self.n, self.c, self.frames = n, num_classes, frames

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(100 + i)
        return {"video": torch.randn(1, self.frames, 3, 64, 64, generator=g), "label": i % self.c, "index": i}


class FakeData(L.LightningDataModule):
    """In-memory clips (fast): two evaluation sets with their own vocabularies."""

    train_class_names = ["RunFast", "jump_high", "Swim"]

    def train_dataloader(self):
        return DataLoader(
            [{k: v[0] if k == "video" else v for k, v in Clips(4, 3)[i].items()} for i in range(4)],
            batch_size=2,
        )

    def val_dataloader(self):
        return [DataLoader(Clips(4, 3), batch_size=2), DataLoader(Clips(3, 2), batch_size=2)]

    def test_dataloader(self):
        return self.val_dataloader()

    def eval_sets(self, stage):
        return [EvalSetInfo("main", self.train_class_names), EvalSetInfo("other", ["EatFood", "drink_water"])]


def trainer(**kw) -> L.Trainer:
    base = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    base.update(kw)
    return L.Trainer(**base)


class Probe(Callback):
    """Records a copy of the TCCLIP weights at the first batch of every evaluation and counts batches."""

    def __init__(self):
        self.seen: dict[str, dict] = {}
        self.batches = 0

    def _grab(self, stage, pl_module):
        self.batches += 1
        self.seen.setdefault(stage, state(pl_module))

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._grab("test", pl_module)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._grab("fit-validate" if trainer.state.fn == "fit" else "validate", pl_module)


# ---------------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_before_anything_changes(clip_file, tmp_path):
    module = finetuned_module(clip_file)
    model, ft = module.model, state(module)
    clip = torch.load(clip_file, weights_only=True)
    bad = dict(clip)
    bad["visual.proj"] = torch.zeros(64, 32)
    bad["ln_final.weight"] = torch.zeros(3)
    del bad["text_projection"]
    bad["visual.extra"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        wise.interpolate(model, bad, 0.5)
    msg = str(err.value)
    for part in (
        "visual.proj: model (64, 64), CLIP weights (64, 32)",
        "ln_final.weight",
        "missing keys: text_projection",
        "unexpected keys: visual.extra",
    ):
        assert part in msg
    assert all(torch.equal(v, ft[k]) for k, v in state(module).items())
    for alpha in (-0.1, 1.5, float("nan"), "0.5", True, None):
        with pytest.raises(ValueError, match="alpha"):
            wise.interpolate(model, clip, alpha)
        with pytest.raises(ValueError, match="alpha"):
            WeightSpaceEnsemble(alpha=alpha, clip_weights=str(clip_file))
    with pytest.raises(ValueError, match="empty"):
        WeightSpaceSweep(alphas=[], clip_weights=str(clip_file))
    with pytest.raises(ValueError, match="alpha"):
        WeightSpaceSweep(alphas=[0.0, 1.2], clip_weights=str(clip_file))
    with pytest.raises(ValueError, match="twice"):
        wise.check_alphas([0.5, 0.5])
    with pytest.raises(ValueError, match="stages"):
        WeightSpaceEnsemble(stages=["train"])
    assert all(torch.equal(v, ft[k]) for k, v in state(module).items())

    # callbacks: the wrong CLIP file fails in setup, before a single test batch
    torch.save(bad, tmp_path / "bad_clip.pt")
    for cb in (
        WeightSpaceEnsemble(clip_weights=str(tmp_path / "bad_clip.pt")),
        WeightSpaceSweep(alphas=[0.5], clip_weights=str(tmp_path / "bad_clip.pt"), output_dir=str(tmp_path)),
        WeightSpaceSweep(alphas=[0.5], clip_weights=str(clip_file), finetune_set="k400_val"),
        WeightSpaceEnsemble(clip_weights=str(tmp_path / "missing.pt")),
    ):
        probe = Probe()
        with pytest.raises((ValueError, RuntimeError)) as err:
            trainer(callbacks=[cb, probe]).test(module, datamodule=FakeData())
        assert probe.batches == 0, type(cb)
        assert any(s in str(err.value) for s in ("visual.proj", "k400_val", "missing.pt")), str(err.value)
    assert all(torch.equal(v, ft[k]) for k, v in state(module).items())
    # without clip_weights and without model.pretrained there is nothing to ensemble with
    bare = TCCLIPModule(model_name="tiny", config=TCCLIPConfig(**TINY))
    with pytest.raises(ValueError, match="no CLIP weights"):
        trainer(callbacks=[WeightSpaceEnsemble()]).test(bare, datamodule=FakeData())


# ------------------------------------------------------------------------------ ensemble callback
def test_ensemble_callback_swaps_and_restores(clip_file):
    module = finetuned_module(clip_file)
    ft = state(module)
    clip = wise.load_clip_state(clip_file)
    plain = trainer().test(module, datamodule=FakeData(), verbose=False)[0]

    probe = Probe()
    # clip_weights=None: the module's own model.pretrained (the CLIP file it was built from)
    out = trainer(callbacks=[WeightSpaceEnsemble(alpha=0.6), probe]).test(
        module, datamodule=FakeData(), verbose=False
    )[0]
    seen = probe.seen["test"]
    expected = wise.ensembled_state_dict(module.model, clip, 0.6)
    assert all(torch.equal(seen[k], expected[k]) for k in seen)
    assert all(torch.equal(v, ft[k]) for k, v in state(module).items())  # restored after test
    assert out["test/main/top1"] == out["test/main/top1"] and set(out) == set(plain)

    # validate only when asked; restored after an exception too
    probe = Probe()
    trainer(callbacks=[WeightSpaceEnsemble(alpha=0.0, stages=["validate"]), probe]).validate(
        module, datamodule=FakeData(), verbose=False
    )
    assert torch.equal(probe.seen["validate"]["visual.proj"], clip["visual.proj"])
    assert all(torch.equal(v, ft[k]) for k, v in state(module).items())

    class Boom(Callback):
        def on_test_batch_end(self, *args, **kwargs):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        trainer(callbacks=[WeightSpaceEnsemble(alpha=0.0), Boom()]).test(module, datamodule=FakeData())
    assert all(torch.equal(v, ft[k]) for k, v in state(module).items())


def test_checkpoints_never_hold_ensembled_weights(clip_file, tmp_path):
    clip = wise.load_clip_state(clip_file)

    class SaveDuringValidation(Callback):
        """Writes a checkpoint while the ensemble is active (the worst case)."""

        def on_validation_batch_end(self, trainer, pl_module, *args, **kwargs):
            if trainer.state.fn == "fit" and not trainer.sanity_checking:
                self.weights = state(pl_module)
                trainer.save_checkpoint(tmp_path / "during_validation.ckpt")

    for during_fit in (False, True):
        module = finetuned_module(clip_file)
        probe, saver = Probe(), SaveDuringValidation()
        ens = WeightSpaceEnsemble(alpha=0.0, stages=["validate", "test"], during_fit=during_fit)
        t = trainer(
            callbacks=[ens, probe, saver],
            max_epochs=1,
            limit_train_batches=1,
            limit_val_batches=1,
            num_sanity_val_steps=0,
            enable_checkpointing=True,
            default_root_dir=tmp_path,
        )
        t.fit(module, datamodule=FakeData())
        after_fit = state(module)
        val_weights = probe.seen["fit-validate"]
        is_clip = torch.equal(val_weights["visual.proj"], clip["visual.proj"])
        assert is_clip == during_fit  # ensembled inside fit only when asked
        if during_fit:
            assert torch.equal(saver.weights["visual.proj"], clip["visual.proj"])
        for path in [tmp_path / "during_validation.ckpt", *tmp_path.rglob("epoch=*.ckpt")]:
            saved = torch.load(path, weights_only=True)["state_dict"]
            for key, value in after_fit.items():  # the fine-tuned (trained) weights, never the ensemble
                assert torch.equal(saved[f"model.{key}"], value), (path, key)
        for p in tmp_path.rglob("*.ckpt"):
            p.unlink()


# --------------------------------------------------------------------------------- sweep callback
@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(
        root,
        num_classes=3,
        videos_per_class=2,
        val_per_class=1,
        num_frames=12,
        width=64,
        height=64,
        formats=("mp4",),
    )
    return root


def synthetic_data(root: Path) -> VideoDataModule:
    """Two test sets: "train" (plays the fine-tuning set) and "val" (a zero-shot target)."""
    return VideoDataModule(
        test_list=[str(root / "train.txt"), str(root / "val.txt")],
        labels=str(root / "labels.csv"),
        num_frames=TINY["num_frames"],
        input_size=64,
        batch_size=4,
        num_workers=0,
        test_views=1,
    )


def test_sweep_matches_single_ratio_runs(clip_file, synthetic_root, tmp_path):
    module = finetuned_module(clip_file)
    ft = state(module)
    alphas = [0.0, 0.5, 1.0]
    out_dir = tmp_path / "sweep"
    (tmp_path / "baseline.csv").write_text("alpha,zero_shot_top1,finetune_top1\n0,40,30\n1,35,60\n")
    sweep = WeightSpaceSweep(
        alphas=alphas,
        clip_weights=str(clip_file),
        output_dir=str(out_dir),
        finetune_set="train",
        zero_shot_sets=["val"],
        baseline_csv=str(tmp_path / "baseline.csv"),
        baseline_label="ViFi-CLIP",
    )
    logger = CSVLogger(tmp_path / "logs", name="")
    main = trainer(callbacks=[sweep], logger=logger).test(
        module, datamodule=synthetic_data(synthetic_root), verbose=False
    )[0]
    assert all(torch.equal(v, ft[k]) for k, v in state(module).items())  # restored after the sweep

    with open(out_dir / "wise_sweep_test.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["alpha"]), r["eval_set"]) for r in rows] == [
        (a, s) for a in alphas for s in ("train", "val")
    ]
    doc = json.loads((out_dir / "wise_sweep_test.json").read_text())
    assert doc["alphas"] == alphas and doc["finetune_set"] == "train" and doc["zero_shot_sets"] == ["val"]

    for alpha in alphas:  # the same numbers as a plain test run with that one ratio
        if alpha == 1.0:  # Lightning's own test pass of the sweep run: the fine-tuned weights
            single = main
        else:
            single = trainer(callbacks=[WeightSpaceEnsemble(alpha=alpha, clip_weights=str(clip_file))]).test(
                module, datamodule=synthetic_data(synthetic_root), verbose=False
            )[0]
        entry = next(e for e in doc["results"] if e["alpha"] == alpha)
        for r in (r for r in rows if float(r["alpha"]) == alpha):
            name = r["eval_set"]
            assert float(r["top1"]) == single[f"test/{name}/top1"], (alpha, name)
            assert float(r["top5"]) == single[f"test/{name}/top5"], (alpha, name)
            assert int(r["videos"]) == {"train": 6, "val": 3}[name]  # counts: not logged as metrics
            assert entry["sets"][name]["top1"] == single[f"test/{name}/top1"]
        assert entry["finetune_top1"] == single["test/train/top1"]
        assert entry["zero_shot_top1"] == single["test/val/top1"]

    # per-ratio metrics in the logger, step = 100 * alpha
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("wise/test/train/top1")]
    assert sorted(int(r["step"]) for r in logged) == [0, 50, 100]
    assert {float(r["wise/alpha"]) for r in logged} == set(alphas)

    png = out_dir / "wise_sweep_test.png"
    check_png(png)


# ------------------------------------------------------------------------------------------- CLI
def test_configs_from_the_cli(clip_file, synthetic_root, tmp_path, capsys):
    from tc_clip.cli import main

    for overlay, cls in (
        ("zero_shot_k400_wise.yaml", "WeightSpaceEnsemble"),
        ("wise_sweep.yaml", "WeightSpaceSweep"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(
                [
                    "test",
                    "--config",
                    str(REPO / "configs/zero_shot_k400.yaml"),
                    "--config",
                    str(REPO / "configs" / overlay),
                    "--print_config",
                ]
            )
        assert exit_.value.code in (0, None)
        text = capsys.readouterr().out
        assert f"class_path: tc_clip.callbacks.{cls}" in text

    # a checkpoint of a "fine-tuned" tiny model, then tc-clip test with each overlay
    module = finetuned_module(clip_file, num_frames=8, num_context_tokens=16, merge_step=40)
    t = trainer()
    t.strategy.connect(module)
    t.save_checkpoint(tmp_path / "ft.ckpt")
    common = [
        "--config",
        str(REPO / "configs/demo.yaml"),
        "--model.pretrained",
        str(clip_file),
        "--data",
        "tc_clip.data.VideoDataModule",
        "--data.test_list",
        str(synthetic_root / "val.txt"),
        "--data.labels",
        str(synthetic_root / "labels.csv"),
        "--data.num_workers",
        "0",
        "--data.num_frames",
        "8",
        "--data.input_size",
        "64",
        "--trainer.enable_progress_bar",
        "false",
        "--ckpt_path",
        str(tmp_path / "ft.ckpt"),
    ]
    root = tmp_path / "runs"
    assert (
        main(
            [
                "test",
                *common,
                "--config",
                str(REPO / "configs/zero_shot_k400_wise.yaml"),
                "--trainer.default_root_dir",
                str(root / "wise"),
            ]
        )
        == 0
    )
    sweep_args = ["test", *common, "--config", str(REPO / "configs/wise_sweep.yaml"),
                  "--trainer.callbacks.init_args.alphas", "[0.0, 0.7, 1.0]", "--trainer.default_root_dir",
                  str(root / "sweep")]
    with pytest.warns(UserWarning, match="no trade-off plot .* tc-clip report"):
        assert main(sweep_args) == 0
    files = sorted(p.name for p in (root / "sweep").rglob("wise_sweep_test.*"))
    assert files == ["wise_sweep_test.csv", "wise_sweep_test.json"]  # one set only: no plot
    with open(next((root / "sweep").rglob("wise_sweep_test.csv"))) as f:
        rows = list(csv.DictReader(f))
    with open(next((root / "wise").rglob("metrics.csv"))) as f:
        wise = [r for r in csv.DictReader(f) if any(r[k] for k in r if k.startswith("test/") and k.endswith("/top1"))]
    key = next(k for k in wise[0] if k.startswith("test/") and k.endswith("/top1") and wise[0][k])
    row = next(r for r in rows if float(r["alpha"]) == 0.7)
    assert float(row["top1"]) == pytest.approx(float(wise[0][key]))


def test_the_old_class_path_of_a_config_still_loads_with_a_warning(tmp_path, capsys):
    from tc_clip.cli import main

    overlay = tmp_path / "old_wise.yaml"
    overlay.write_text((REPO / "configs/zero_shot_k400_wise.yaml").read_text().replace(
        "tc_clip.callbacks.WeightSpaceEnsemble", "tc_clip.callbacks.ensemble.WeightSpaceEnsemble"))
    assert "tc_clip.callbacks.ensemble.WeightSpaceEnsemble" in overlay.read_text()
    with pytest.warns(DeprecationWarning, match="tc_clip.callbacks.ensemble.WeightSpaceEnsemble moved to "
                                                "tc_clip.callbacks.weight_ensemble.WeightSpaceEnsemble"):
        with pytest.raises(SystemExit) as exit_:
            main(["test", "--config", str(REPO / "configs/zero_shot_k400.yaml"), "--config", str(overlay),
                  "--print_config"])
    assert exit_.value.code in (0, None)
    assert "WeightSpaceEnsemble" in capsys.readouterr().out


def test_sweep_in_validate_and_not_inside_fit(clip_file, tmp_path):
    module = finetuned_module(clip_file)
    sweep = WeightSpaceSweep(
        alphas=[0.2, 0.9], clip_weights=str(clip_file), output_dir=str(tmp_path), stages=["validate"]
    )
    trainer(callbacks=[sweep], max_epochs=1, limit_train_batches=1, num_sanity_val_steps=0).fit(
        module, datamodule=FakeData()
    )
    assert not list(tmp_path.glob("wise_sweep_*"))  # never inside fit
    ft = state(module)
    trainer(callbacks=[sweep]).validate(module, datamodule=FakeData(), verbose=False)
    assert sorted(p.name for p in tmp_path.glob("wise_sweep_validate.*")) == [
        "wise_sweep_validate.csv",
        "wise_sweep_validate.json",
        "wise_sweep_validate.png",
    ]
    assert [(r.alpha, r.name, r.stage) for r in sweep.results["validate"]] == [
        (a, s, "validate") for a in (0.2, 0.9) for s in ("main", "other")
    ]
    assert all(torch.equal(v, ft[k]) for k, v in state(module).items())
    with pytest.raises(ValueError, match="both configured"):
        trainer(callbacks=[sweep, WeightSpaceEnsemble(stages=["validate"])]).validate(
            module, datamodule=FakeData()
        )
