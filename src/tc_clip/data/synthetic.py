"""Synthetic action-recognition videos: moving coloured shapes, really encoded with PyAV.

Every class is a combination of a colour, a shape and a motion direction, so a tiny model learns it in
a few epochs, and the files go through the same decoding path as a real dataset (H.264 in ``.mp4``,
MPEG-4 part 2 in ``.avi``, VP9 in ``.webm``).

>>> from tc_clip.data import synthetic
>>> paths = synthetic.generate("/tmp/synth", num_classes=5, videos_per_class=8)
>>> paths.train_list, paths.val_list, paths.labels
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["SyntheticPaths", "generate", "write_video", "class_names", "dataset_key", "CODECS"]

#: container extension -> (codec, pixel format)
CODECS: dict[str, tuple[str, str]] = {
    "mp4": ("libx264", "yuv420p"),
    "avi": ("mpeg4", "yuv420p"),
    "webm": ("libvpx-vp9", "yuv420p"),
    "mkv": ("ffv1", "yuv444p"),
}

_COLOURS = {
    "Red": (230, 40, 40),
    "Green": (40, 210, 60),
    "Blue": (50, 80, 240),
    "Yellow": (240, 220, 40),
    "Magenta": (220, 50, 220),
    "Cyan": (40, 220, 220),
    "Orange": (250, 140, 20),
    "White": (245, 245, 245),
}
_SHAPES = ("Square", "Circle", "Triangle")
_DIRECTIONS = ("Right", "Down", "Left", "Up")


@dataclass
class SyntheticPaths:
    """Where :func:`generate` wrote things."""

    root: str
    train_list: str
    val_list: str
    labels: str
    class_names: list[str] = field(default_factory=list)


def class_names(num_classes: int) -> list[str]:
    """CamelCase class names such as ``MoveRedSquareRight`` (parsed into words by the model)."""
    names = []
    colours = list(_COLOURS)
    for c in range(num_classes):
        colour = colours[c % len(colours)]
        shape = _SHAPES[c % len(_SHAPES)]
        direction = _DIRECTIONS[(c // len(colours) + c) % len(_DIRECTIONS)]
        name = f"Move{colour}{shape}{direction}"
        k = 2
        while name in names:  # only for very many classes
            name = f"Move{colour}{shape}{direction}{k}"
            k += 1
        names.append(name)
    return names


def _class_params(c: int, num_classes: int) -> tuple[tuple[int, int, int], str, float]:
    colours = list(_COLOURS.values())
    colour = colours[c % len(colours)]
    shape = _SHAPES[c % len(_SHAPES)]
    direction = (c // len(colours) + c) % len(_DIRECTIONS)
    return colour, shape, direction * math.pi / 2


def render_clip(
    c: int,
    num_classes: int,
    rng: np.random.Generator,
    num_frames: int = 32,
    width: int = 64,
    height: int = 48,
) -> np.ndarray:
    """Frames ``uint8 [T, H, W, 3]`` of class ``c``: a shape of the class colour moving in its direction
    over a textured background, with random start, size, speed and background."""
    colour, shape, angle = _class_params(c, num_classes)
    dx, dy = math.cos(angle), math.sin(angle)
    size = rng.uniform(0.18, 0.26) * min(width, height)
    speed = rng.uniform(0.5, 0.8) * min(width, height) / max(num_frames - 1, 1)
    travel = speed * (num_frames - 1)
    # start so that the whole trajectory stays (mostly) inside the frame
    cx0 = width / 2 - dx * travel / 2 + rng.uniform(-0.1, 0.1) * width
    cy0 = height / 2 - dy * travel / 2 + rng.uniform(-0.1, 0.1) * height
    base = rng.integers(20, 90, size=3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg = np.empty((height, width, 3), np.float32)
    freq = rng.uniform(0.05, 0.2, size=2)
    phase = rng.uniform(0, 2 * math.pi)
    wave = 15 * np.sin(xx * freq[0] + yy * freq[1] + phase)
    bg[:] = base[None, None, :] + wave[..., None]
    bg += rng.normal(0, 4, size=bg.shape)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    col = np.asarray(colour, np.float32)
    for t in range(num_frames):
        cx, cy = cx0 + dx * speed * t, cy0 + dy * speed * t
        if shape == "Square":
            mask = (np.abs(xx - cx) <= size / 2) & (np.abs(yy - cy) <= size / 2)
        elif shape == "Circle":
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= (size / 2) ** 2
        else:  # triangle pointing up
            rel_y = (yy - (cy - size / 2)) / size
            mask = (rel_y >= 0) & (rel_y <= 1) & (np.abs(xx - cx) <= rel_y * size / 2)
        img = bg.copy()
        img[mask] = col
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float = 30,
    codec: str | None = None,
    pix_fmt: str | None = None,
    options: dict[str, str] | None = None,
    gop_size: int | None = None,
    rotation: int | None = None,
) -> None:
    """Encode ``uint8 [T, H, W, 3]`` RGB frames (or ``[T, H, W]`` grayscale) to ``path`` with PyAV.

    The codec defaults to the container's entry in :data:`CODECS`.
    """
    path = Path(path)
    ext = path.suffix.lstrip(".").lower()
    default_codec, default_fmt = CODECS.get(ext, ("libx264", "yuv420p"))
    codec = codec or default_codec
    pix_fmt = pix_fmt or default_fmt
    frames = np.asarray(frames)
    gray = frames.ndim == 3
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if gop_size is not None:
            stream.codec_context.gop_size = gop_size
        opts = {}
        if codec == "libx264":
            opts = {"preset": "veryfast", "crf": "20"}
        elif codec == "libvpx-vp9":
            opts = {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0"}
        elif codec == "mpeg4":
            stream.codec_context.bit_rate = max(200_000, width * height * 30)
        opts.update(options or {})
        stream.options = opts
        if rotation:
            stream.metadata["rotate"] = str(rotation)
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="gray" if gray else "rgb24")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def dataset_key(**params) -> str:
    """A generated dataset's name from its generation parameters (its folder under a cache, its marker)."""
    return "_".join(f"{k}{v}" for k, v in sorted(params.items())).replace(" ", "").replace(",", "-")


def generate(
    root: str | os.PathLike,
    num_classes: int = 5,
    videos_per_class: int = 12,
    val_per_class: int = 4,
    num_frames: int = 32,
    width: int = 64,
    height: int = 48,
    fps: float = 15,
    formats: Sequence[str] = ("mp4", "avi", "webm"),
    seed: int = 0,
    overwrite: bool = False,
) -> SyntheticPaths:
    """Write a synthetic dataset under ``root`` and return its paths.

    Layout: ``videos/<ClassName>/<ClassName>_<i>.<ext>`` (formats cycle through ``formats``),
    ``train.txt`` / ``val.txt`` (``relative/path label`` lines, relative to ``root``), ``labels.csv``
    (``id,name``). ``videos_per_class`` videos per class go to the train list and ``val_per_class`` more
    to the validation list. Idempotent: when ``root`` already holds a complete dataset (a ``.done``
    marker) nothing is written unless ``overwrite``. The dataset is written to a temporary folder first
    and moved into place, so concurrent callers do not see half-written files.
    """
    root = Path(root).expanduser()
    names = class_names(num_classes)
    paths = SyntheticPaths(
        root=str(root),
        train_list=str(root / "train.txt"),
        val_list=str(root / "val.txt"),
        labels=str(root / "labels.csv"),
        class_names=names,
    )
    if (root / ".done").exists() and not overwrite:
        return paths
    for fmt in formats:
        if fmt not in CODECS:
            raise ValueError(f"unknown synthetic video format {fmt!r}; choose from {sorted(CODECS)}")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp", dir=root.parent))
    try:
        rng = np.random.default_rng(seed)
        lines: dict[str, list[str]] = {"train": [], "val": []}
        k = 0
        for c, name in enumerate(names):
            (tmp / "videos" / name).mkdir(parents=True, exist_ok=True)
            for i in range(videos_per_class + val_per_class):
                ext = formats[k % len(formats)]
                k += 1
                rel = f"videos/{name}/{name}_{i:03d}.{ext}"
                frames = render_clip(c, num_classes, rng, num_frames, width, height)
                write_video(tmp / rel, frames, fps=fps)
                lines["train" if i < videos_per_class else "val"].append(f"{rel} {c}")
        for split, rows in lines.items():
            (tmp / f"{split}.txt").write_text("\n".join(rows) + "\n")
        with open(tmp / "labels.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id", "name"])
            writer.writerows(enumerate(names))
        (tmp / ".done").write_text(
            dataset_key(
                num_classes=num_classes,
                videos_per_class=videos_per_class,
                val_per_class=val_per_class,
                num_frames=num_frames,
                width=width,
                height=height,
                fps=fps,
                formats=tuple(formats),
                seed=seed,
            )
            + "\n"
        )
        if root.exists():
            if (root / ".done").exists() and not overwrite:  # somebody else finished first
                return paths
            shutil.rmtree(root)
        os.chmod(tmp, 0o755)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return paths
