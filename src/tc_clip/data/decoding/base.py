"""What every decoder backend shares: the error it raises, what a read returns, how frame indices are asked
for and clamped, and the one resize that makes the pixels independent of the backend."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from tc_clip.errors import UserError

__all__ = [
    "DecodedClip",
    "DecoderMismatchError",
    "IndexSampler",
    "Source",
    "VideoDecodeError",
    "VideoInfo",
    "check_exists",
    "clamp_indices",
    "source_name",
    "shrink_short_side",
]

IndexSampler = Callable[[int], Sequence[int]]
#: a video file, or the bytes of one (as stored in shards)
Source = str | os.PathLike | bytes


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded."""


class DecoderMismatchError(UserError, ValueError):
    """The decoder the user chose would read this video wrongly: not a bad video (a run is not meant to
    skip it), a wrong choice of decoder, so the run stops and says which to use."""


@dataclass
class DecodedClip:
    """What :func:`tc_clip.data.decoding.decode` read: the frames, the video's frame count and the
    backend that read them."""

    frames: np.ndarray  # uint8 [K, H, W, 3]
    num_frames: int
    backend: str  # "pyav" or "torchcodec"


@dataclass
class VideoInfo:
    num_frames: int
    width: int
    height: int
    fps: float
    rotation: int = 0


def source_name(source: Source, name: str | None = None) -> str:
    """How errors name a video: ``name``, else its path, else its size in bytes."""
    return name or (f"<{len(source)} bytes>" if isinstance(source, bytes) else str(source))


def check_exists(source: Source) -> None:
    if not isinstance(source, bytes) and not os.path.exists(source):
        raise FileNotFoundError(f"video not found: {source}")


def clamp_indices(indices: Sequence[int] | IndexSampler, n: int) -> list[int]:
    """The wanted frames of a video of ``n`` frames (``indices`` may be a function of ``n``), clamped
    to ``[0, n - 1]``."""
    return [min(max(int(i), 0), n - 1) for i in (indices(n) if callable(indices) else indices)]


def shrink_short_side(frames: np.ndarray, short_side: int | None) -> np.ndarray:
    """``uint8 [K, H, W, 3]`` with the short side brought down to ``short_side`` (never up), by the
    antialiased bilinear resize of the training transform (torchvision's ``resize(clip, [short_side])``),
    so that a clip resized here equals one resized there."""
    if not short_side or min(frames.shape[1:3]) <= short_side:
        return frames
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)  # channels-last: torch's fast uint8 path
    return TF.resize(clip, [short_side], antialias=True).permute(0, 2, 3, 1).numpy()
