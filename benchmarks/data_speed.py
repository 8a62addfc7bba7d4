"""Data pipeline speed per loader worker: 16-frame TSN clips at 224 px for training.

On ten-second 30 fps videos (320x240 MPEG-4 in .avi, 340x256 H.264 in .mp4, x264 preset medium) it
reports, for every decoder available (torchcodec, PyAV):

- decoding alone: ms per clip to decode the sampled frames, the ceiling of any worker with that decoder;
- which decoder ``auto`` picks for each set (per stream: PyAV where there are B-frames, else torchcodec);
- loader alone: clips/s delivered by a DataLoader whose workers decode, sample, crop and resize and hand
  over uint8 clips with their random draws (what a training run does with ``device_augment``), per
  worker; and the same with the whole augmentation in the worker (``device_augment=False``). Decoding
  and loaders read every clip from a name not read before (a symbolic link), a first pass as in an epoch,
  so ``auto`` pays its probes;
- the colour half per clip on this CPU: the batched device transform (``gpu_augment.augment_batch``,
  batch of 8) against the per-clip transform it replaces (``transforms.augment_clip``), one thread;
- the bytes per clip handed over by the workers (uint8 + draws against float32);
- streaming the same videos from litdata shards against reading the files.

A realistic set (``--sets 720p 360p``): camera-like footage at 1280x720 and 640x360 in H.264 as found in
real datasets (x264 preset medium, its default GOP of 250 with B-frames, at the bitrate YouTube serves
for the size, :data:`REALISTIC`; ``--source_rate crf23`` for x264's default CRF 23, which gives the
smooth synthetic footage a third of that), and the same files after ``tc-clip prepare`` (its defaults:
short side 256, a keyframe every 16 frames, no B-frames, CRF 18, x264 tune fastdecode). For both it
reports, per decoder, the decode ceiling and the loader's clips/s per worker on a first pass over unseen
files: every timed clip reads a new file name (a symbolic link), so ``auto``'s per-file memory of its
choice is never hit, as in a real epoch. The source and the prepared tree alternate over ``--rounds``
rounds and the medians are reported, so the machine's drift does not decide the ratio.

    python benchmarks/data_speed.py [--videos 8] [--clips 48] [--workers 1 2] [--dir /tmp/tc_clip_bench]
    python benchmarks/data_speed.py --sets 720p 360p --clips 16 --workers 1   # the realistic set, prepared
    python benchmarks/data_speed.py --device cuda   # also time the batched transform on the GPU
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, default_collate

from tc_clip.data.annotations import Sample
from tc_clip.data.dataset import VideoClipDataset, worker_init_fn
from tc_clip.data.decoding import decode, describe_backend, read_frames, torchcodec_status
from tc_clip.data.gpu_augment import augment_batch
from tc_clip.data.splits import SplitData
from tc_clip.data.synthetic import write_video
from tc_clip.data.transforms import augment_clip, draw_augment, train_indices

SETS = {"avi": (320, 240, "mpeg4", {}), "mp4": (340, 256, "libx264", {"preset": "medium", "crf": "23"})}
#: the realistic sets: size and the bitrate YouTube serves H.264 at that size (published measurements:
#: itag 22, 720p, 1.6-2.0 Mb/s; itag 18, 360p, about 0.52 Mb/s). Decoding cost grows with the bitrate, and
#: the synthetic footage at x264's default CRF 23 comes out at a third of it (0.54 Mb/s at 720p).
REALISTIC = {"720p": (1280, 720, 1_600_000), "360p": (640, 360, 520_000)}
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
    read_frames(paths[-1], [0], backend=decoder)
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


def footage_frames(width: int, height: int, seed: int, seconds: int = 10, fps: int = 30):
    """Camera-like RGB frames, one at a time: smooth texture at three scales relative to the frame (so a
    downscaled copy compresses like real footage, not like noise), a slow camera pan, three moving
    shaded objects and light sensor noise."""
    rng = np.random.default_rng(seed)
    pad_x, pad_y = width // 4, height // 4
    canvas = np.full((height + pad_y, width + pad_x, 3), 120, np.float32)
    for cells, amp in ((8, 90.0), (30, 35.0), (90, 10.0)):
        small = torch.from_numpy(rng.uniform(-1, 1, (1, 3, cells + 2, cells * 16 // 9 + 2)).astype(np.float32))
        canvas += amp * F.interpolate(small, size=canvas.shape[:2], mode="bicubic")[0].permute(1, 2, 0).numpy()
    noise = rng.normal(0, 2, (7, height, width, 3)).astype(np.float32)
    objects = [(rng.uniform(0.06, 0.12) * height, rng.uniform(0, 255, 3), rng.uniform(0.2, 0.8, 2),
                rng.uniform(-2, 2) * width / (seconds * fps)) for _ in range(3)]
    for t in range(seconds * fps):
        ox, oy = int(pad_x / 2 * (1 + np.sin(t / 60))), int(pad_y / 2 * (1 + 0.6 * np.sin(t / 45)))
        img = canvas[oy : oy + height, ox : ox + width] + noise[t % len(noise)]
        for r, colour, (px, py), speed in objects:
            cx, cy = (px * width + speed * t) % width, py * height + 0.2 * height * np.sin(t / 25 + r)
            x0, x1, y0, y1 = int(max(cx - r, 0)), int(min(cx + r + 1, width)), int(max(cy - r, 0)), int(
                min(cy + r + 1, height))
            yy, xx = np.mgrid[y0:y1, x0:x1]
            d = ((xx - cx) ** 2 + (yy - cy) ** 2) / r**2
            inside = d < 1
            img[y0:y1, x0:x1][inside] = colour * (1 - 0.3 * d[inside, None])
        yield np.clip(img, 0, 255).astype(np.uint8)


def make_footage(
    path: Path, width: int, height: int, seed: int, seconds: int = 10, fps: int = 30, bitrate: int | None = None
) -> str:
    """:func:`footage_frames` written frame by frame with x264's defaults (preset medium, GOP 250,
    B-frames), as real datasets hold it: at ``bitrate`` bits/s (average), or at CRF 23 where None."""
    if path.exists():
        return str(path)
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "medium"} if bitrate else {"preset": "medium", "crf": "23"}
        if bitrate:
            stream.bit_rate = bitrate
        for rgb in footage_frames(width, height, seed, seconds, fps):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return str(path)


def fresh(paths: list[str], folder: Path, count: int) -> list[str]:
    """``count`` new names (symbolic links) for ``paths`` in turn, so every read is of an unseen file."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(count):
        link = folder / f"{k:04d}_{Path(paths[k % len(paths)]).name}"
        link.unlink(missing_ok=True)
        link.symlink_to(paths[k % len(paths)])
        names.append(str(link))
    return names


def realistic(args, decoders: list[str]) -> None:
    """The realistic sets and their prepared trees: decode ceiling and loader clips/s per worker."""
    from tc_clip.data.prepare import PrepareSettings, prepare_folder

    Path(args.dir).mkdir(parents=True, exist_ok=True)
    views = Path(tempfile.mkdtemp(prefix="views", dir=args.dir))
    settings = PrepareSettings()
    rate = "CRF 23" if args.source_rate == "crf23" else "YouTube's bitrate"
    print(f"\nrealistic sets (H.264 at {rate}, default GOP), prepared with tc-clip prepare ({settings.key()}); "
          f"first pass over unseen files, {args.clips} clips per measurement")
    print(f"{'set':<22} {'decoder':<11} {'decode ms/clip':>15} {'ceiling clips/s':>16} {'workers':>7} "
          f"{'loader clips/s per worker':>26}")
    for name in [n for n in args.sets if n in REALISTIC]:
        width, height, bitrate = REALISTIC[name]
        bitrate = None if args.source_rate == "crf23" else bitrate
        source = Path(args.dir) / "realistic" / f"{name}-{args.source_rate}"
        source.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        originals = [make_footage(source / f"clip{k}.mp4", width, height, seed=k, bitrate=bitrate)
                     for k in range(args.videos)]
        mbps = sum(Path(p).stat().st_size for p in originals) * 8 / (10 * len(originals)) / 1e6
        if time.perf_counter() - t0 > 1:
            print(f"  (generated {len(originals)} videos in {time.perf_counter() - t0:.0f} s)")
        print(f"  {name} sources: {mbps:.2f} Mb/s on average")
        report = prepare_folder(source, Path(args.dir) / "prepared" / source.name, settings=settings, psnr_videos=3,
                                progress=False)
        print("  " + "\n  ".join(report.format().splitlines()[:4]))
        trees = {kind: sorted(str(p) for p in folder.glob("clip*.mp4"))
                 for kind, folder in (("source", source), ("prepared", Path(report.output_dir)))}
        decode, load = defaultdict(list), defaultdict(list)
        for r in range(args.rounds):  # the two trees alternate, so the machine's drift hits both alike
            for d in decoders:
                for kind, paths in trees.items():
                    tag = f"{name}-{kind}-{d}-{r}"
                    decode[kind, d].append(decode_ms(fresh(paths, views / tag, args.clips + 1), d, args.clips))
                    for w in args.workers:
                        names = fresh(paths, views / f"{tag}-loader{w}", args.clips + w)
                        dataset = VideoClipDataset([Sample(p, 0) for p in names], FRAMES, SIZE, train=True,
                                                   device_augment=True, decoder=d)
                        load[kind, d, w].append(clips_per_second(file_loader(dataset, w, args.clips), args.clips) / w)
        per_worker = {key: statistics.median(v) for key, v in load.items()}
        for kind in trees:
            for d in decoders:
                ms = statistics.median(decode[kind, d])
                for w in args.workers:
                    print(f"{width}x{height} {kind:<13} {d:<11} {ms:>15.0f} {1000 / ms:>16.1f} {w:>7} "
                          f"{per_worker[kind, d, w]:>26.2f}", flush=True)
        for w in args.workers:
            best = {kind: max((per_worker[kind, d, w], d) for d in decoders) for kind in trees}
            ratios = [f"{per_worker['prepared', d, w] / per_worker['source', d, w]:.1f}x ({d})" for d in decoders]
            print(f"  {name}, {w} worker(s), medians of {args.rounds} alternating rounds: the prepared tree reads "
                  f"{', '.join(ratios)} faster per worker than the source; best decoder each: "
                  f"{best['prepared'][0]:.2f} ({best['prepared'][1]}) vs {best['source'][0]:.2f} "
                  f"({best['source'][1]}) clips/s, {best['prepared'][0] / best['source'][0]:.1f}x")
    shutil.rmtree(views, ignore_errors=True)


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
    parser.add_argument("--sets", nargs="+", choices=[*SETS, *REALISTIC], default=[*SETS, *REALISTIC])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the realistic sets (medians)")
    parser.add_argument("--source_rate", choices=["youtube", "crf23"], default="youtube",
                        help="the realistic sources' rate: YouTube's bitrate for the size, or x264's CRF 23")
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

    Path(args.dir).mkdir(parents=True, exist_ok=True)
    views = Path(tempfile.mkdtemp(prefix="views", dir=args.dir))  # new names per measurement: a first pass
    if any(s in SETS for s in args.sets):
        print(f"\n{'set':<22} {'decoder':<11} {'workers':>7} {'loader clips/s':>15} {'per worker':>11} "
              f"{'all-CPU per worker':>19}")
    for ext in [s for s in args.sets if s in SETS]:
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
            tag = f"{ext}-{decoder}"
            ms = decode_ms(fresh(paths, views / tag, args.clips + 1), decoder, args.clips)
            print(f"  {label}, {decoder}: decoding the sampled frames alone {ms:.1f} ms per clip "
                  f"(the ceiling of one worker: {1000 / ms:.1f} clips/s)")
            for w in args.workers:
                rates = []
                for device_augment in (True, False):
                    names = fresh(paths, views / f"{tag}-{w}-{device_augment}", args.clips + w)
                    dataset = VideoClipDataset([Sample(p, 0) for p in names], FRAMES, SIZE, train=True,
                                               device_augment=device_augment, decoder=decoder)
                    rates.append(clips_per_second(file_loader(dataset, w, args.clips), args.clips))
                fast, slow = rates
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
    shutil.rmtree(views, ignore_errors=True)
    if any(s in REALISTIC for s in args.sets):
        realistic(args, decoders)


if __name__ == "__main__":
    main()
