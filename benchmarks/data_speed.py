"""Data pipeline speed per loader worker: 16-frame TSN clips at 224 px for training.

On ten-second 30 fps videos (320x240 MPEG-4 in .avi, 340x256 H.264 in .mp4, x264 preset medium) it
reports, for every decoder available (torchcodec, PyAV):

- decoding alone: ms per clip to decode the sampled frames, the ceiling of any worker with that decoder;
- which decoder ``auto`` picks for each set (per stream: PyAV where there are B-frames, else torchcodec);
- loader alone: clips/s delivered by a DataLoader whose workers decode, sample, crop and resize and hand
  over uint8 clips with their random draws (what a training run does with ``device_augment``), per
  worker; and the same with the whole augmentation in the worker (``device_augment=False``);
- the colour half per clip on this CPU: the batched device transform (``gpu_augment.augment_batch``,
  batch of 8) against the per-clip transform it replaces (``transforms.augment_clip``), one thread;
- the bytes per clip handed over by the workers (uint8 + draws against float32);
- streaming the same videos from litdata shards against reading the files.

    python benchmarks/data_speed.py [--videos 8] [--clips 48] [--workers 1 2] [--dir /tmp/tc_clip_bench]
    python benchmarks/data_speed.py --device cuda   # also time the batched transform on the GPU
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from tc_clip.data.annotations import Sample
from tc_clip.data.dataset import VideoClipDataset, worker_init_fn
from tc_clip.data.decoding import decode, describe_backend, read_frames, torchcodec_status
from tc_clip.data.gpu_augment import augment_batch
from tc_clip.data.splits import SplitData
from tc_clip.data.synthetic import write_video
from tc_clip.data.transforms import augment_clip, draw_augment, train_indices

SETS = {"avi": (320, 240, "mpeg4", {}), "mp4": (340, 256, "libx264", {"preset": "medium", "crf": "23"})}
FRAMES, SIZE = 16, 224


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


def decode_ms(paths: list[str], decoder: str, clips: int) -> float:
    """ms per clip to decode the 16 sampled frames alone (in this process, no resize, crop or loader)."""
    rng = random.Random(0)
    read_frames(paths[0], [0], backend=decoder)
    start = time.perf_counter()
    for k in range(clips):
        read_frames(paths[k % len(paths)], lambda n: train_indices(n, FRAMES, rng), backend=decoder)
    return 1000 * (time.perf_counter() - start) / clips


def clips_per_second(loader, clips: int) -> float:
    """Clips/s over ``clips`` clips (epochs repeated as needed), after every worker produced its first batch."""
    skip, count, start = max(1, loader.num_workers), 0, 0.0
    while True:
        for batch in loader:
            if skip:
                skip -= 1
                start = time.perf_counter()
                continue
            count += len(batch["label"])
            if count >= clips:
                return count / (time.perf_counter() - start)


def file_loader(dataset: Dataset, workers: int, clips: int) -> DataLoader:
    n = len(dataset)
    sampler = [i % n for i in range(clips + max(1, workers))]
    return DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=workers, worker_init_fn=worker_init_fn)


def shard_loader(dataset: VideoClipDataset, folder: Path, workers: int):
    from tc_clip.data.shards import ShardedClipDataset, StreamingDataLoader

    streaming = ShardedClipDataset(folder, dataset, shuffle=True, seed=0, drop_last=False)
    return StreamingDataLoader(streaming, batch_size=1, num_workers=workers, worker_init_fn=worker_init_fn)


def pack_videos(paths: list[str], folder: Path, items: int) -> Path | None:
    """Shards of ``items`` clips (the videos repeated), so that one epoch covers a measurement."""
    try:
        from tc_clip.data.shards import pack
    except ImportError:
        return None

    class Paths:  # the one data module method pack needs (tc_clip.data.splits.SplitSource)
        def splits(self, stage):
            samples = [Sample(paths[i % len(paths)], 0) for i in range(items)]
            return [SplitData("bench", samples, ["x"])] if stage == "fit" else []

    pack(Paths(), folder)
    return folder / "fit" / "00"


def colour_cost(device: str, batch: int = 8, reps: int = 3) -> tuple[float, float]:
    """ms per clip: (per-clip reference on the CPU, batched transform on ``device``), one CPU thread."""
    torch.manual_seed(0)
    video = torch.randint(0, 256, (batch, FRAMES, 3, SIZE, SIZE), dtype=torch.uint8)
    draws = [draw_augment(FRAMES) for _ in range(batch)]
    params = default_collate(draws)
    ref, dev = [], []
    gpu = video.to(device)
    for _ in range(reps):
        t = time.perf_counter()
        for c, d in zip(video, draws, strict=True):
            augment_clip(c, d)
        ref.append((time.perf_counter() - t) / batch)
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        augment_batch(gpu, params)
        if device != "cpu":
            torch.cuda.synchronize()
        dev.append((time.perf_counter() - t) / batch)
    return 1000 * min(ref), 1000 * min(dev)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="videos per set")
    parser.add_argument("--clips", type=int, default=48, help="clips timed per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dir", default="/tmp/tc_clip_bench")
    parser.add_argument("--device", default="cpu", help="where to time the batched transform as well")
    args = parser.parse_args(argv)
    random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    decoders = ["auto", "torchcodec", "pyav"] if torchcodec_status()[0] else ["pyav"]
    print(f"decoder chosen by 'auto': {describe_backend('auto')}; {torchcodec_status()[1]}")
    print(f"{args.clips} clips per measurement, {FRAMES} frames, {SIZE} px, torch threads 1 (workers: 1 each)")

    ref_ms, batched_ms = colour_cost("cpu")
    print(f"\ncolour half per clip on the CPU: per-clip reference {ref_ms:.1f} ms, batched transform "
          f"{batched_ms:.1f} ms ({ref_ms / batched_ms:.2f}x)")
    if args.device != "cpu":
        _, dev_ms = colour_cost(args.device)
        print(f"batched transform on {args.device}: {dev_ms:.3f} ms per clip")
    uint8 = FRAMES * 3 * SIZE * SIZE
    draws = sum(v.nbytes for v in draw_augment(FRAMES).values())
    print(f"bytes per clip handed over: {uint8 + draws:,} (uint8 clip {uint8:,} + draws {draws}) against "
          f"{4 * uint8:,} float32 ({4 * uint8 / (uint8 + draws):.2f}x fewer)")

    print(f"\n{'set':<22} {'decoder':<11} {'workers':>7} {'loader clips/s':>15} {'per worker':>11} "
          f"{'all-CPU per worker':>19}")
    for ext in ("avi", "mp4"):
        width, height, codec, _ = SETS[ext]
        t0 = time.perf_counter()
        paths = make_videos(Path(args.dir) / ext, ext, args.videos)
        if time.perf_counter() - t0 > 1:
            print(f"  (generated {len(paths)} videos in {time.perf_counter() - t0:.0f} s)")
        label = f"{width}x{height} {codec} .{ext}"
        samples = [Sample(p, 0) for p in paths]
        for decoder in decoders:
            if decoder == "auto":
                ran = decode(paths[0], [0]).backend
                print(f"  'auto' reads {label} with {ran}")
            device = VideoClipDataset(samples, FRAMES, SIZE, train=True, device_augment=True, decoder=decoder)
            cpu = VideoClipDataset(samples, FRAMES, SIZE, train=True, device_augment=False, decoder=decoder)
            ms = decode_ms(paths, decoder, args.clips)
            print(f"  {label}, {decoder}: decoding the sampled frames alone {ms:.1f} ms per clip "
                  f"(the ceiling of one worker: {1000 / ms:.1f} clips/s)")
            for w in args.workers:
                fast = clips_per_second(file_loader(device, w, args.clips), args.clips)
                slow = clips_per_second(file_loader(cpu, w, args.clips), args.clips)
                print(f"{label:<22} {decoder:<11} {w:>7} {fast:>15.1f} {fast / w:>11.1f} {slow / w:>19.1f}",
                      flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            folder = pack_videos(paths, Path(tmp), args.clips + max(args.workers))
            if folder is None:
                print("  shards: litdata not installed")
                continue
            repeated = [samples[i % len(samples)] for i in range(args.clips + max(args.workers))]
            dataset = VideoClipDataset(repeated, FRAMES, SIZE, train=True, device_augment=True)
            for w in args.workers:
                files = clips_per_second(file_loader(dataset, w, args.clips), args.clips)
                sharded = clips_per_second(shard_loader(dataset, folder, w), args.clips)
                print(f"  shards vs files, {w} worker(s), {describe_backend('auto')}: {sharded:.1f} vs {files:.1f} "
                      f"clips/s ({sharded / files:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
