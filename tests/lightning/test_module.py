"""TCCLIPModule with the tiny random CLIP on in-memory videos: optimiser groups, schedule in a real
Trainer run, multi-view evaluation, vocabulary switching per dataloader, predict output."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from tc_clip.data import EvalSetInfo
from tc_clip.lightning import TCCLIPModule
from tc_clip.lightning.schedule import release_cosine_lr
from tc_clip.model import TCCLIPConfig
from tc_clip.results import read_eval_records

TINY = dict(num_frames=4, num_context_tokens=16, merge_step=20)


class Clips(Dataset):
    """Deterministic random clips; ``views=None`` gives train items ``[T,3,S,S]``, else ``[V,T,3,S,S]``."""

    def __init__(self, n: int, num_classes: int, views: int | None = None, frames: int = 4):
        self.n, self.c, self.views, self.frames = n, num_classes, views, frames

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(1000 + i)
        shape = (self.frames, 3, 64, 64) if self.views is None else (self.views, self.frames, 3, 64, 64)
        y = i % self.c
        return {"video": torch.randn(shape, generator=g), "label": y, "index": i, "skipped": i == 1,
                "path": f"v{i}.mp4"}


class FakeData(L.LightningDataModule):
    train_class_names = ["RunFast", "jump_high", "Swim"]

    def __init__(self, n_train=8, batch_size=2, val_sizes=(5, 3)):
        super().__init__()
        self.n_train, self.batch_size, self.val_sizes = n_train, batch_size, val_sizes

    def train_dataloader(self):
        return DataLoader(Clips(self.n_train, 3), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return [DataLoader(Clips(self.val_sizes[0], 3, 2), batch_size=2),
                DataLoader(Clips(self.val_sizes[1], 2, 2), batch_size=2)]

    def test_dataloader(self):
        return self.val_dataloader()

    def predict_dataloader(self):
        return DataLoader(Clips(3, 3, 2), batch_size=2)

    def eval_sets(self, stage):
        if stage == "predict":
            return [EvalSetInfo("predict", self.train_class_names)]
        return [EvalSetInfo("main", self.train_class_names), EvalSetInfo("other", ["EatFood", "drink_water"])]


def make_module(**kw):
    kw.setdefault("config", TCCLIPConfig(**TINY))
    return TCCLIPModule(model_name="tiny", **kw)


def trainer(**kw):
    base = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False)
    base.update(kw)
    return L.Trainer(**base)


def test_optimizer_groups_and_adamw_settings():
    module = make_module(lr=1e-4, prompt_lr_mult=10.0, weight_decay=0.001)
    groups = {g["name"]: g for g in module.optimizer_groups()}
    assert set(groups) == {"prompt", "base"}
    assert groups["prompt"]["lr"] == pytest.approx(1e-3) and groups["base"]["lr"] == pytest.approx(1e-4)
    prompt_ids = {id(p) for p in groups["prompt"]["params"]}
    assert id(module.model.prompt_ctx) in prompt_ids
    assert all(id(p) in prompt_ids for p in module.model.vp_blocks.parameters())
    # the local-global bias is not in the 10x group
    bias = [p for n, p in module.model.named_parameters() if "bias_table" in n or "local_global" in n]
    assert bias and all(id(p) not in prompt_ids for p in bias)
    n_trainable = sum(1 for p in module.model.parameters() if p.requires_grad)
    assert len(groups["prompt"]["params"]) + len(groups["base"]["params"]) == n_trainable
    # ViFi-CLIP: no prompt vectors, no VP -> one group at one learning rate
    vifi = make_module(config=TCCLIPConfig.vifi_clip(**TINY), lr=1e-4)
    assert [g["name"] for g in vifi.optimizer_groups()] == ["base"]


class LRRecorder(L.Callback):
    def __init__(self):
        self.lrs = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append({g["name"]: g["lr"] for g in optimizer.param_groups})


def test_schedule_in_trainer_with_accumulation():
    """10 batches, accumulate 2 -> 5 optimiser steps per epoch; 3 epochs -> 15 steps; warm-up 1 epoch."""
    module = make_module(lr=1e-4, lr_min=1e-6, warmup_epochs=1, mixup_alpha=0.0, cutmix_alpha=0.0)
    rec = LRRecorder()
    tr = trainer(max_epochs=3, accumulate_grad_batches=2, limit_val_batches=0, callbacks=[rec])
    tr.fit(module, FakeData(n_train=20, batch_size=2))
    assert len(rec.lrs) == 15 and tr.global_step == 15
    opt = tr.optimizers[0]
    assert opt.defaults["betas"] == (0.9, 0.98) and opt.defaults["eps"] == 1e-8
    assert all(g["weight_decay"] == 0.001 for g in opt.param_groups)
    for step in (0, 1, 4, 5, 6, 10, 14):
        for name, peak in (("base", 1e-4), ("prompt", 1e-3)):
            expected = release_cosine_lr(step, peak, 1e-6, 5, 15)
            assert rec.lrs[step][name] == pytest.approx(expected, rel=1e-6, abs=1e-12), (step, name)
    # the release's shape: warm-up to the peak, then the cosine of the whole run (1/3 of it done at step 5)
    assert rec.lrs[0]["base"] == 0.0 and rec.lrs[4]["base"] == pytest.approx(0.8e-4)
    assert rec.lrs[5]["base"] == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6) * (1 + math.cos(math.pi / 3)))
    assert rec.lrs[5]["prompt"] == pytest.approx(1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + math.cos(math.pi / 3)))


def test_leftover_micro_batches_are_dropped():
    """5 micro-batches per epoch, accumulate 2: 2 optimiser steps per epoch (the 5th batch is dropped, not
    stepped alone); the schedule's length agrees. Before: 3 steps per epoch, 9 in all."""
    module = make_module(lr=1e-4, lr_min=1e-6, warmup_epochs=1, mixup_alpha=0.0, cutmix_alpha=0.0)
    rec, seen = LRRecorder(), []

    class Batches(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(batch_idx)

    tr = trainer(max_epochs=3, accumulate_grad_batches=2, limit_val_batches=0, callbacks=[rec, Batches()])
    tr.fit(module, FakeData(n_train=10, batch_size=2))
    assert tr.global_step == 6 and len(rec.lrs) == 6
    assert tr.estimated_stepping_batches == 6 and tr.num_training_batches == 4
    assert seen == [0, 1, 2, 3] * 3
    assert tr.lr_scheduler_configs[0].scheduler.lr_lambdas[0].total_steps == 6
    adam_steps = {float(s["step"]) for s in tr.optimizers[0].state.values()}
    assert adam_steps == {6.0}
    # HMDB-51 2-shot (SPEC 5b): 102 videos, 8 per device, global batch 64 -> 12 micro-batches, 1 step per epoch
    hmdb = trainer(max_epochs=2, accumulate_grad_batches=8, limit_val_batches=0)
    hmdb.fit(make_module(mixup_alpha=0.0, cutmix_alpha=0.0), FakeData(n_train=102, batch_size=8))
    assert hmdb.global_step == 2 == hmdb.estimated_stepping_batches
    with pytest.raises(RuntimeError, match="fewer than the 8 that one optimiser step accumulates.*--global_batch_size"):
        trainer(max_epochs=1, accumulate_grad_batches=8, limit_val_batches=0).fit(
            make_module(), FakeData(n_train=10, batch_size=2))


def test_multi_view_scores_equal_per_view_softmax_sum():
    module = make_module().eval()
    module.model.set_class_names(FakeData.train_class_names)
    video = torch.randn(2, 3, 4, 3, 64, 64)
    with torch.no_grad():
        scores = module.eval_scores(video)
        ref = sum(module.model(video[:, v]).softmax(-1) for v in range(3))
        module.hparams.views_per_forward = 2  # chunked evaluation gives the same numbers
        chunked = module.eval_scores(video)
    assert torch.allclose(scores, ref, atol=1e-5)
    assert torch.allclose(chunked, ref, atol=1e-5)
    assert torch.allclose(scores.sum(-1), torch.full((2,), 3.0), atol=1e-5)


def test_validate_switches_vocabulary_per_dataloader_and_logs_summaries():
    module = make_module()
    data = FakeData(val_sizes=(5, 3))
    seen = []
    original = module.model.set_class_names

    def spy(names):
        seen.append(list(names))
        original(names)

    module.model.set_class_names = spy
    out = trainer().validate(module, data)[0]
    assert ["EatFood", "drink_water"] in seen
    assert 0.0 <= out["val/other/top1"] <= 1.0 and out["val/other/top5"] == 1.0  # 2 classes
    # counts are not metric curves, and there is no unnamed val/top1 alias
    assert not [k for k in out if k.endswith(("/videos", "/skipped"))] and "val/top1" not in out
    # the same numbers when evaluating with another batch size: aggregation is per video
    module2 = make_module()
    module2.load_state_dict(module.state_dict())
    data2 = FakeData(val_sizes=(5, 3))
    data2.val_dataloader = lambda: [DataLoader(Clips(5, 3, 2), batch_size=5),
                                    DataLoader(Clips(3, 2, 2), batch_size=1)]
    out2 = trainer().validate(module2, data2)[0]
    for key in ("val/main/top1", "val/other/top1", "val/main/top5"):
        assert out2[key] == pytest.approx(out[key])


def test_eval_records_and_one_table_per_stage(tmp_path, capsys):
    """One results-file record per evaluation epoch with the counts; one table per stage (not per loader)."""
    module = make_module()
    data = FakeData(val_sizes=(5, 3))
    data.describe = lambda: {"protocol": "zero_shot", "benchmark": "fake", "shot": None, "seed": None,
                             "train_list": None}
    data.eval_sets = lambda stage: [EvalSetInfo("fake/split1", FakeData.train_class_names, "fake"),
                                    EvalSetInfo("fake/split2", ["EatFood", "drink_water"], "fake")]
    logger = CSVLogger(tmp_path, name="")
    out = trainer(logger=logger).test(module, data, verbose=False)[0]
    splits = (out["test/fake/split1/top1"], out["test/fake/split2/top1"])
    assert out["test/fake/top1_mean"] == pytest.approx(sum(splits) / 2)
    printed = capsys.readouterr().out
    assert printed.count("test results") == 1 and "fake/split2" in printed and "fake/top1_mean" in printed
    (record,) = read_eval_records(logger.log_dir)
    assert record["stage"] == "test" and record["meta"]["protocol"] == "zero_shot"
    assert [(s["name"], s["videos"], s["skipped"]) for s in record["sets"]] == [
        ("fake/split1", 5, 1), ("fake/split2", 3, 1)]
    assert record["summary"]["fake/top1_mean"] == pytest.approx(out["test/fake/top1_mean"])


def test_fit_then_predict_returns_top_k_names():
    module = make_module(lr=1e-4, predict_top_k=2)
    data = FakeData()
    tr = trainer(max_epochs=1)
    tr.fit(module, data)
    preds = tr.predict(module, data)
    rows = [r for batch in preds for r in batch]
    assert len(rows) == 3
    assert rows[0]["path"] == "v0.mp4" and rows[0]["label_name"] == "RunFast"
    assert len(rows[0]["classes"]) == 2 and set(rows[0]["classes"]) <= set(FakeData.train_class_names)
    assert rows[0]["scores"][0] >= rows[0]["scores"][1] and 0 < sum(rows[0]["scores"]) <= 1.0 + 1e-6


def test_checkpoint_keeps_class_names_and_hparams(tmp_path):
    module = make_module()
    tr = trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, default_root_dir=tmp_path,
                 enable_checkpointing=True)
    tr.fit(module, FakeData())
    ckpt = next(tmp_path.rglob("*.ckpt"))
    blob = torch.load(ckpt, weights_only=True, map_location="cpu")
    assert blob["tc_clip_class_names"] == FakeData.train_class_names
    assert blob["hyper_parameters"]["config"]["num_frames"] == 4
    restored = TCCLIPModule.load_from_checkpoint(ckpt)
    assert isinstance(restored.config, TCCLIPConfig) and restored.config.num_context_tokens == 16
    assert restored._train_class_names == FakeData.train_class_names
