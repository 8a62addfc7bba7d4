"""Batched device augmentation: same result as the per-clip reference, wired through the data module."""

import itertools
import random

import lightning as L
import pytest
import torch
from torch.utils.data import default_collate

from data_helpers import make_synthetic
from tc_clip.data import VideoDataModule
from tc_clip.data.gpu_augment import AUGMENT_KEY, augment_batch, device_transform, normalize
from tc_clip.data.transforms import Normalize255, augment_clip, draw_augment


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synth") / "ds")


def _draws(batch: int, frames: int, **kw) -> list[dict]:
    draws = [draw_augment(frames, **kw) for _ in range(batch)]
    for d, (j, g, f) in zip(draws, itertools.product((True, False), repeat=3), strict=False):
        d.update(jitter=torch.tensor(j), gray=torch.tensor(g), flip=torch.tensor(f))  # every combination
    return draws


@pytest.mark.parametrize("chunk", [None, 1, 3, 64])
@pytest.mark.parametrize("amounts", [(0.4, 0.4, 0.2, 0.1), (0.4, 0.0, 0.2, 0.0)])
def test_batched_equals_per_clip_reference(chunk, amounts):
    torch.manual_seed(0)
    video = torch.randint(0, 256, (10, 6, 3, 20, 24), dtype=torch.uint8)
    draws = _draws(10, 6, jitter=amounts)
    reference = torch.stack([augment_clip(c, d) for c, d in zip(video, draws, strict=True)])
    batched = augment_batch(video, default_collate(draws), chunk=chunk)
    assert batched.dtype == torch.float32 and batched.shape == video.shape
    torch.testing.assert_close(batched, reference, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(batched, normalize(video))  # the augmentation did something


def test_all_cpu_dataset_equals_per_clip_reference():
    """``device_augment=False`` runs the batched transform in the worker: the per-clip reference's result."""
    from tc_clip.data.dataset import VideoClipDataset
    from tc_clip.data.transforms import train_geometry

    dataset = VideoClipDataset([], num_frames=6, input_size=24, train=True, device_augment=False)
    raw = torch.randint(0, 256, (6, 3, 30, 40), dtype=torch.uint8)
    for seed in range(6):  # jitter, gray and flip drawn on and off
        torch.manual_seed(seed)
        got, params = dataset.transform(raw)
        torch.manual_seed(seed)
        reference = augment_clip(train_geometry(24)(raw), draw_augment(6))
        assert params is None and got.dtype == torch.float32
        torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-4)


def test_device_transform_evaluation_passthrough_and_key():
    clip = torch.randint(0, 256, (2, 4, 3, 16, 16), dtype=torch.uint8)
    out = device_transform({"video": clip, "label": torch.zeros(2)})
    torch.testing.assert_close(out["video"], Normalize255()(clip))
    as_float = {"video": out["video"]}
    assert device_transform(as_float) is as_float  # already float: untouched
    draws = default_collate(_draws(2, 4))
    out = device_transform({"video": clip[:, 0].unsqueeze(1).expand(2, 4, 3, 16, 16).contiguous(),
                            AUGMENT_KEY: draws})
    assert AUGMENT_KEY not in out and out["video"].dtype == torch.float32


def _dm(synth, **kw):
    return VideoDataModule(
        train_list=synth.train_list, val_list=synth.val_list, labels=synth.labels, num_frames=4,
        input_size=32, batch_size=3, num_workers=0, test_views=2, test_crops=3, seed=5, **kw,
    )


def test_device_path_equals_worker_path(synth):
    """Same seed, same draws: uint8 + device transform gives the worker's float clips, for a quarter of
    the bytes through the loader."""
    batches = {}
    for on in (True, False):
        dm = _dm(synth, device_augment=on)
        dm.setup("fit")
        dm.setup("test")
        torch.manual_seed(1)
        random.seed(1)
        batches[on] = [next(iter(dm.train_dataloader())), next(iter(dm.test_dataloader()[0]))]
    for device, worker in zip(batches[True], batches[False], strict=True):
        assert device["video"].dtype == torch.uint8 and worker["video"].dtype == torch.float32
        assert device["video"].nbytes * 4 == worker["video"].nbytes
        done = dm.on_after_batch_transfer(device, 0)
        torch.testing.assert_close(done["video"], worker["video"], rtol=1e-5, atol=1e-4)
        assert done.keys() == worker.keys()
    assert AUGMENT_KEY in batches[True][0] and batches[True][0][AUGMENT_KEY]["factors"].shape == (3, 4, 4)


class _Recorder(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[str, torch.dtype, bool]] = []

    def _record(self, stage, batch):
        self.seen.append((stage, batch["video"].dtype, AUGMENT_KEY in batch))
        return self.w * batch["video"].mean()

    def training_step(self, batch, batch_idx):
        return self._record("train", batch)

    def validation_step(self, batch, batch_idx):
        self._record("val", batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_calls_the_data_module_hook(synth, tmp_path):
    module = _Recorder()
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0, accelerator="cpu",
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=_dm(synth))
    assert ("train", torch.float32, False) in module.seen and ("val", torch.float32, False) in module.seen
    assert {dtype for _, dtype, _ in module.seen} == {torch.float32}
