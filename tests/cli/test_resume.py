"""Exact resume: a ``tc-clip fit`` killed with SIGKILL mid-epoch and resumed with ``--ckpt_path last`` ends
with the same weights, bit for bit, as an uninterrupted run (CPU), and logs into the same version folder.
Also the sampler and per-sample seeding on their own."""

from __future__ import annotations

import csv
import logging
import signal
from pathlib import Path

import pytest
import torch

from run_helpers import DEMO, run_cli
from tc_clip.data.sampler import ResumableSampler, SeededDataset, SeededIndex, derive_seed

STEPS_PER_EPOCH = 6  # 12 training videos, batch 2


def fit_args(cache: Path, root: Path, workers: int) -> list[str]:
    return [
        "fit", "--config", DEMO,
        "--data.cache_dir", str(cache), "--data.num_classes", "3", "--data.videos_per_class", "4",
        "--data.val_per_class", "1", "--data.batch_size", "2", "--data.num_workers", str(workers),
        "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root),
        "--model.mixup_alpha", "0.8", "--model.cutmix_alpha", "1.0",  # the per-batch draws are resumed too
        "--last_every_n_steps", "2", "--trainer.log_every_n_steps", "1",
    ]


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def logged(version_dir: Path, wanted) -> list[tuple[int, str, str]]:
    """``(step, column, value)`` of the filled ``wanted(column)`` cells of a CSVLogger metrics.csv."""
    with open(version_dir / "metrics.csv", newline="") as f:
        return [(int(r["step"]), k, v) for r in csv.DictReader(f) for k, v in sorted(r.items()) if v and wanted(k)]


def step_losses(version_dir: Path) -> list[tuple[int, str, str]]:
    return logged(version_dir, lambda k: k == "train/loss_step")


def val_top1(version_dir: Path) -> list[tuple[int, str, str]]:
    return logged(version_dir, lambda k: k.startswith("val/") and k.endswith("top1"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor], Path]:
    """The synthetic cache, the final weights and the log folder of an uninterrupted run (0 workers)."""
    base = tmp_path_factory.mktemp("resume_ref")
    cache = base / "cache"
    proc = run_cli(fit_args(cache, base / "runs", workers=0), base)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return cache, weights(base / "runs/version_0/checkpoints/last.ckpt"), base / "runs/version_0"


@pytest.mark.slow
@pytest.mark.parametrize("workers, kill_at, in_validation", [(0, 5, False), (2, 9, False), (0, 6, True)])
def test_killed_and_resumed_run_ends_bit_identical(reference, tmp_path, workers, kill_at, in_validation):
    """Kills inside epoch 0 and 1 (0 and 2 loader workers) and inside the validation after epoch 0."""
    cache, expected, ref_dir = reference
    root = tmp_path / "runs"
    args = fit_args(cache, root, workers)
    killed = run_cli(args + ["--trainer.callbacks+=run_helpers.KillAt", f"--trainer.callbacks.global_step={kill_at}",
                             f"--trainer.callbacks.in_validation={in_validation}"], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    last = root / "version_0/checkpoints/last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    # the kill lost at most --last_every_n_steps (2) steps; the checkpoint is inside an epoch
    assert kill_at - 2 <= saved["global_step"] < kill_at + (not in_validation)
    assert saved["global_step"] % STEPS_PER_EPOCH != 0
    assert saved["tc_clip_sampler"]["consumed"] == 2 * (saved["global_step"] % STEPS_PER_EPOCH)

    resumed = run_cli(args + ["--ckpt_path", "last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resuming from" in resumed.stderr + resumed.stdout
    assert sorted(p.name for p in root.iterdir()) == ["version_0"]  # same version folder
    final = torch.load(last, map_location="cpu", weights_only=True)
    assert final["global_step"] == 2 * STEPS_PER_EPOCH
    got = final["state_dict"]
    assert got.keys() == expected.keys()
    differ = [k for k in expected if not torch.equal(got[k], expected[k])]
    assert not differ, f"{len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:3]}"
    # the log was continued: the killed run's rows before the checkpoint, then the resumed run's, equal
    # to the uninterrupted run's (every step once)
    assert len(step_losses(ref_dir)) == 2 * STEPS_PER_EPOCH and len(val_top1(ref_dir)) >= 2
    assert step_losses(root / "version_0") == step_losses(ref_dir)
    assert val_top1(root / "version_0") == val_top1(ref_dir)  # no validation skipped or repeated


# --------------------------------------------------------------------------------- units


def test_sampler_order_is_a_function_of_seed_and_epoch():
    data = list(range(10))
    a, b = ResumableSampler(data, seed=3), ResumableSampler(data, seed=3)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) and sorted(a) == data
    b.set_epoch(2)
    assert list(a) != list(b)
    seeds = {i: i.seed for i in a}
    assert all(isinstance(i, SeededIndex) for i in a)
    assert seeds[4] == derive_seed(3, "sample", 1, 4)


def test_sampler_resumes_after_consumed_samples_also_with_other_process_counts():
    data = list(range(11))
    full = ResumableSampler(data, seed=0)
    full.set_epoch(2)
    order = [int(i) for i in full]
    state = full.state_dict(consumed=4)
    assert state == {"seed": 0, "epoch": 2, "consumed": 4}
    fresh = ResumableSampler(data, seed=0)
    fresh.load_state_dict(state)
    fresh.set_epoch(2)
    assert [int(i) for i in fresh] == order[4:]
    assert len(fresh) == 11  # the epoch's length does not change (schedules, progress)
    fresh.set_epoch(3)
    assert len(list(fresh)) == 11  # the skip applies to the interrupted epoch only
    # two processes: padded to 12, interleaved; resuming after 2 per process continues at position 4
    ranks = [ResumableSampler(data, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    for s in ranks:
        s.load_state_dict(state)
        s.set_epoch(2)
    rest = [int(i) for s in ranks for i in s]
    assert sorted(rest) == sorted((order + order[:1])[4:])
    with pytest.raises(ValueError, match="data seed 0.*--data.seed"):
        ResumableSampler(data, seed=1).load_state_dict(state)


def test_seeded_dataset_draws_depend_on_the_index_seed_only():
    class Noise:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.rand(2)

    ds = SeededDataset(Noise())
    torch.manual_seed(0)
    x = ds[SeededIndex(1, seed=7)]
    before = torch.get_rng_state()
    torch.rand(5)  # the global stream moves on ...
    assert torch.equal(ds[SeededIndex(1, seed=7)], x)  # ... the sample does not
    assert not torch.equal(ds[SeededIndex(1, seed=8)], x)
    torch.set_rng_state(before)
    ds[SeededIndex(2, seed=9)]
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left untouched


@pytest.mark.slow
def test_two_experiments_in_one_root_each_resume_their_own_run(reference, tmp_path, caplog):
    """A (seed 0) is killed, B (seed 1, fewer videos) finishes in the same root; each ``--ckpt_path last``
    resumes its own run and leaves the other's folder alone (issue 17: 8)."""
    from tc_clip.cli import main

    cache, _, _ = reference
    root = tmp_path / "runs"
    a = fit_args(cache, root, workers=0)
    b = [*a, "--seed_everything", "1", "--data.videos_per_class", "3", "--trainer.max_epochs", "1"]
    killed = run_cli(a + ["--trainer.callbacks+=run_helpers.KillAt", "--trainer.callbacks.global_step=3"], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    assert main(b) == 0
    b_config = (root / "version_1/config.yaml").read_text()
    with caplog.at_level(logging.INFO):
        assert main(a + ["--ckpt_path", "last", "--trainer.limit_train_batches", "4"]) == 0  # (limits may change)
    assert f"resuming from {root / 'version_0/checkpoints'}" in caplog.text
    assert sorted(p.name for p in root.iterdir()) == ["version_0", "version_1"]
    assert (root / "version_1/config.yaml").read_text() == b_config
    final = torch.load(root / "version_0/checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert final["global_step"] == 2 * 4 and final["tc_clip_run"]["keys"]["seed_everything"] == "0"
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(b + ["--ckpt_path", "last"]) == 0  # B is complete: nothing left to train, in its own folder
    assert f"resuming from {root / 'version_1/checkpoints'}" in caplog.text
