"""Clips per second of the video pipeline: 16-frame TSN sampling + the training transforms.

Compares tc_clip's sparse PyAV reader (demux, decode only from the keyframe before each sampled
frame, drop unneeded non-reference frames, convert only the sampled frames to RGB) with the plain
approach (decode every frame to RGB, then index), on ten-second 30 fps videos: 320x240 MPEG-4 in .avi
and 340x256 H.264 in .mp4 (x264 defaults: preset medium, keyframe interval 250).

    python benchmarks/data_speed.py [--videos 8] [--clips 48] [--workers 1 2] [--dir /tmp/tc_clip_bench]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tc_clip.data.annotations import Sample
from tc_clip.data.dataset import VideoClipDataset
from tc_clip.data.decoding import read_all_frames
from tc_clip.data.synthetic import write_video
from tc_clip.data.transforms import train_indices, train_transform

SETS = {"avi": (320, 240, "mpeg4", {}), "mp4": (340, 256, "libx264", {"preset": "medium", "crf": "23"})}


def make_videos(folder: Path, ext: str, count: int, seconds: int = 10, fps: int = 30) -> list[str]:
    """Textured frames with moving shapes, camera pan and sensor noise (so the codec has real work)."""
    width, height, codec, opts = SETS[ext]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        path = folder / f"clip{k}.{ext}"
        paths.append(str(path))
        if path.exists():
            continue
        rng = np.random.default_rng(k)
        big = rng.integers(0, 255, size=(height // 4 + 40, width // 4 + 40, 3)).astype(np.float32)
        big = np.kron(big, np.ones((4, 4, 1), np.float32))  # blocky texture, panned below
        yy, xx = np.mgrid[0:height, 0:width]
        frames = np.empty((seconds * fps, height, width, 3), np.uint8)
        for t in range(len(frames)):
            ox, oy = int(t * 0.5) % 150, int(t * 0.3) % 150
            img = big[oy : oy + height, ox : ox + width].copy()
            cx, cy = (t * 3) % width, height / 2 + 60 * np.sin(t / 20)
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < 900] = (250, 60, 40)
            img += rng.normal(0, 6, img.shape)
            frames[t] = np.clip(img, 0, 255)
        write_video(path, frames, fps=fps, codec=codec, options=opts)
    return paths


class PlainDataset(Dataset):
    """Decode every frame to RGB, index the TSN frames, same transforms."""

    def __init__(self, paths: list[str], num_frames: int = 16, size: int = 224):
        self.paths, self.num_frames = paths, num_frames
        self.transform = train_transform(size)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        frames = read_all_frames(self.paths[i])
        idx = train_indices(len(frames), self.num_frames)
        clip = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2)
        return {"video": self.transform(clip)}


def clips_per_second(dataset: Dataset, workers: int, clips: int) -> float:
    n = len(dataset)
    reps = max(1, -(-clips // n))
    sampler = [i % n for i in range(reps * n)][:clips]
    loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=workers)
    it = iter(loader)
    for _ in range(workers):  # let every worker start and produce once
        next(it)
    start, count = time.perf_counter(), 0
    for _ in it:
        count += 1
    return count / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=8, help="videos per set")
    parser.add_argument("--clips", type=int, default=48, help="clips timed per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dir", default="/tmp/tc_clip_bench")
    args = parser.parse_args(argv)
    random.seed(0)
    torch.manual_seed(0)
    print(f"torch threads in workers: 1; {args.clips} clips per measurement, 16 frames, 224 px")
    print(f"{'set':<22} {'workers':>7} {'plain clips/s':>14} {'tc_clip clips/s':>16} {'speed-up':>9}")
    for ext in ("avi", "mp4"):
        width, height, codec, _ = SETS[ext]
        t0 = time.perf_counter()
        paths = make_videos(Path(args.dir) / ext, ext, args.videos)
        gen = time.perf_counter() - t0
        fast = VideoClipDataset([Sample(p, 0) for p in paths], num_frames=16, input_size=224, train=True)
        plain = PlainDataset(paths)
        for w in args.workers:
            p = clips_per_second(plain, w, args.clips)
            f = clips_per_second(fast, w, args.clips)
            label = f"{width}x{height} {codec} .{ext}"
            print(f"{label:<22} {w:>7} {p:>14.1f} {f:>16.1f} {f / p:>8.1f}x", flush=True)
        if gen > 1:
            print(f"  (generated {len(paths)} videos in {gen:.0f} s)")


if __name__ == "__main__":
    main()
