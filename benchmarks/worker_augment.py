"""Per-clip cost of the all-CPU training transform (``device_augment=False``) in a loader worker.

Times, interleaved in one run on one thread, the worker's whole training transform of a decoded clip
(geometry, then the colour half) two ways: before, with the per-clip reference colour path
(``transforms.augment_clip``), and now, with :meth:`VideoClipDataset.transform` (the batched
``gpu_augment.augment_batch`` on the clip alone). Medians over ``--repeats`` rounds of ``--clips`` clips.

    python benchmarks/worker_augment.py [--frames 16] [--size 224] [--clips 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tc_clip.data.dataset import VideoClipDataset
from tc_clip.data.transforms import augment_clip, draw_augment


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dataset = VideoClipDataset([], args.frames, args.size, train=True, device_augment=False)
    short = int(256 / 224 * args.size)
    clips = [torch.randint(0, 256, (args.frames, 3, short, short * 4 // 3), dtype=torch.uint8)
             for _ in range(args.clips)]

    def before(clip):
        return augment_clip(dataset.geometry(clip), draw_augment(args.frames, dataset.flip))

    def now(clip):
        return dataset.transform(clip)[0]

    times: dict[str, list[float]] = {"before": [], "now": []}
    for fn in (before, now):  # warm-up
        fn(clips[0])
    for _ in range(args.repeats):
        for name, fn in (("before", before), ("now", now)):
            start = time.perf_counter()
            for clip in clips:
                fn(clip)
            times[name].append(1000 * (time.perf_counter() - start) / len(clips))
    old, new = statistics.median(times["before"]), statistics.median(times["now"])
    print(f"device_augment=False, {args.frames} frames of {short}x{short * 4 // 3} -> {args.size}, one thread, "
          f"torch {torch.__version__}: per clip {old:.1f} ms with the per-clip reference path, {new:.1f} ms "
          f"with the batched path ({old / new:.2f}x)")


if __name__ == "__main__":
    main()
