"""Map-style video clip dataset (so Lightning's ``DistributedSampler`` works)."""

from __future__ import annotations

import functools
import random
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Dataset

from tc_clip.data.annotations import Sample
from tc_clip.data.decoding import DECODERS, Backend, DecodedClip, VideoDecodeError, decode, describe_backend
from tc_clip.data.gpu_augment import AUGMENT_KEY, augment_batch
from tc_clip.data.transforms import (
    Normalize255,
    decode_short_side,
    draw_augment,
    eval_crops,
    eval_indices,
    train_geometry,
    train_indices,
)

__all__ = ["BadVideoWarning", "VideoClipDataset", "make_item", "worker_init_fn"]


class BadVideoWarning(UserWarning):
    """A video could not be read: replaced by another sample (training) or left out (evaluation)."""


class VideoClipDataset(Dataset):
    """Clips of ``num_frames`` frames from a list of :class:`Sample`.

    ``train=True``: TSN random sampling and the training augmentation; item ``video`` is
    ``float [T, 3, S, S]``. ``train=False``: ``views`` deterministic temporal views times ``crops`` (1 or
    3) spatial crops; ``video`` is ``float [views * crops, T, 3, S, S]`` (view-major).

    A missing or undecodable training video is replaced by another random sample; ``skipped`` counts
    the replacements. An unreadable evaluation video is not replaced (that would count another video
    twice): its item is a zero clip with ``label`` -1 and ``skipped`` 1, which the metrics leave out.
    Each file is named once in a :class:`BadVideoWarning`. ``strict=True`` raises instead.

    ``device_augment=True`` leaves the colour half of the pipeline to the device
    (:func:`tc_clip.data.gpu_augment.device_transform`): ``video`` stays ``uint8`` and training items
    carry their random draws under ``augment`` (same draws, same result, a quarter of the bytes).
    ``device_augment=False`` runs the same batched transform here, on the clip alone.
    ``decoder``: ``"auto"`` (per stream, see :func:`tc_clip.data.decoding.read_frames`), ``"torchcodec"`` or ``"pyav"``.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        num_frames: int = 16,
        input_size: int = 224,
        train: bool = True,
        views: int = 1,
        crops: int = 1,
        flip: bool = True,
        strict: bool = False,
        return_path: bool = False,
        max_retries: int = 10,
        device_augment: bool = False,
        decoder: Backend = "auto",
    ):
        if crops not in (1, 3):
            raise ValueError(f"crops must be 1 or 3, got {crops}")
        if views < 1 or num_frames < 1:
            raise ValueError("views and num_frames must be >= 1")
        self.samples = list(samples)
        self.num_frames = num_frames
        self.input_size = input_size
        self.train = train
        self.views = views
        self.crops = crops
        self.strict = strict
        self.return_path = return_path
        self.max_retries = max_retries
        self.flip = flip
        self.device_augment = device_augment
        self.geometry = train_geometry(input_size) if train else None
        self.decoder = decoder
        _announce_decoder(describe_backend(decoder))  # also checks a forced choice
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def _indices(self, n: int) -> list[int]:
        if self.train:
            return train_indices(n, self.num_frames)
        out: list[int] = []
        for v in range(self.views):
            out += eval_indices(n, self.num_frames, v, self.views)
        return out

    def decode(self, source: str | bytes, name: str | None = None) -> DecodedClip:
        """The sampled frames of a video file (or of its bytes), at the size the transforms start from."""
        short = decode_short_side(self.input_size, 1 if self.train else self.crops)
        return decode(source, self._indices, short_side=short, backend=self.decoder, name=name)

    def transform_decoded(self, clip: DecodedClip) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None, str]:
        """:meth:`transform` of decoded frames, with the backend that read them."""
        return (*self.transform(torch.from_numpy(clip.frames).permute(0, 3, 1, 2)), clip.backend)

    def transform(self, clip: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Sampled frames -> the item's ``video`` and, for the device, the training draws."""
        if self.train:
            clip = self.geometry(clip)
            params = draw_augment(self.num_frames, self.flip)
            if self.device_augment:
                return clip, params
            # the batched transform on a batch of one: the reference's result at about half its cost
            return augment_batch(clip[None], {k: v[None] for k, v in params.items()})[0], None
        views = clip.reshape(self.views, self.num_frames, *clip.shape[1:])
        out = torch.cat([eval_crops(v, self.input_size, self.crops) for v in views])  # [V*C, T, 3, S, S]
        return (out, None) if self.device_augment else (Normalize255()(out), None)

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None, str]:
        """The transformed clip of sample ``index``, its device draws and the backend that decoded it
        (raises on a bad video)."""
        return self.transform_decoded(self.decode(self.samples[index].path))

    def _blank(self) -> torch.Tensor:
        """The stand-in for an unreadable evaluation video (its label -1 keeps it out of the metric)."""
        size = self.input_size
        dtype = torch.uint8 if self.device_augment else torch.float32
        return torch.zeros(self.views * self.crops, self.num_frames, 3, size, size, dtype=dtype)

    def warn_unreadable(self, path: str, error: Exception, action: str) -> None:
        """Name an unreadable video once per dataset in a :class:`BadVideoWarning` (``action``: what was done)."""
        if path not in self._warned:
            self._warned.add(path)
            warnings.warn(f"unreadable video {path} ({action}): {error}", BadVideoWarning, stacklevel=3)

    def unreadable_item(self, index: int, error: Exception) -> dict:
        """The item of an unreadable evaluation video: a zero clip with label -1, left out of the metric."""
        self.warn_unreadable(self.samples[index].path, error, "left out of the evaluation")
        item = self._item(index, index, self._blank(), 1, None, None)
        item["label"] = torch.tensor(-1, dtype=torch.long)
        return item

    def __getitem__(self, index: int) -> dict:
        if not self.train:
            try:
                video, _, backend = self.load(index)
            except (FileNotFoundError, VideoDecodeError, OSError) as e:
                if self.strict:
                    raise
                return self.unreadable_item(index, e)
            return self._item(index, index, video, 0, None, backend)
        skipped = 0
        current = index
        while True:
            try:
                video, params, backend = self.load(current)
                break
            except (FileNotFoundError, VideoDecodeError, OSError) as e:
                if self.strict:
                    raise
                path = self.samples[current].path
                self.warn_unreadable(path, e, "replaced by another training video")
                skipped += 1
                if skipped > self.max_retries or len(self.samples) < 2:
                    raise RuntimeError(
                        f"{skipped} videos in a row could not be read (last: {path}); check the data "
                        f"with `tc-clip check-data`"
                    ) from e
                current = random.randrange(len(self.samples) - 1)
                current += current >= index
        return self._item(index, current, video, skipped, params, backend)

    def _item(
        self,
        index: int,
        current: int,
        video: torch.Tensor,
        skipped: int,
        params: dict[str, torch.Tensor] | None,
        backend: str | None,
    ) -> dict:
        s = self.samples[current]
        return make_item(video, s.label, index, skipped, params, backend, s.path if self.return_path else None)


def make_item(
    video: torch.Tensor,
    label: int,
    index: int,
    skipped: int,
    params: dict[str, torch.Tensor] | None,
    backend: str | None,
    path: str | None = None,
) -> dict:
    """One dataset item. ``decoder`` is the position of the backend that read the clip in
    :data:`DECODERS` (-1: none, an unreadable evaluation video), so that runs can say which one ran."""
    item = {
        "video": video,
        "label": torch.tensor(label, dtype=torch.long),
        "index": torch.tensor(index, dtype=torch.long),
        "skipped": torch.tensor(skipped, dtype=torch.long),
        "decoder": torch.tensor(DECODERS.index(backend) if backend else -1, dtype=torch.long),
    }
    if params is not None:
        item[AUGMENT_KEY] = params
    if path is not None:
        item["path"] = path
    return item


@functools.cache
def _announce_decoder(description: str) -> None:
    """Say once per process (and decoder) which decoder reads the videos."""
    rank_zero_info(f"video decoder: {description}")


def worker_init_fn(worker_id: int) -> None:
    """Seed Python's and NumPy's RNGs of a DataLoader worker from its torch seed (which the loader
    derives from its generator and the worker id), so sampling and augmentation are reproducible."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
