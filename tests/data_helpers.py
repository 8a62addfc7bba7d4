"""Shared helpers of the data tests: a tiny synthetic dataset and small video writers."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from tc_clip.data import synthetic


def make_synthetic(root: Path) -> synthetic.SyntheticPaths:
    """3 classes x (3 train + 1 val) videos of 20 frames at 64x48, all three codecs."""
    return synthetic.generate(
        root, num_classes=3, videos_per_class=3, val_per_class=1, num_frames=20, width=64, height=48
    )


def touch(path: Path) -> Path:
    """An empty file (and its folders): enough for list and folder readers that do not decode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def write_labels(path: Path, names) -> str:
    """A labels CSV ``id,name`` with the names in id order; returns its path as a string."""
    path.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    return str(path)


def noise_frames(n: int, w: int = 64, h: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(h, w, 3))
    return np.stack([np.roll(base, 3 * t, axis=1) for t in range(n)]).astype(np.uint8)


def set_mp4_rotation(path: Path, out: Path) -> None:
    """Copy an .mp4 and set its track matrix to 'rotate 90 degrees clockwise for display'."""
    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    version = data[i + 4]
    off = i + 4 + (24 if version == 0 else 36) + 16
    data[off : off + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    out.write_bytes(bytes(data))
