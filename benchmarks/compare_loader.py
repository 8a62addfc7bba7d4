"""Loader-alone clips/s per worker of this checkout against another one, alternated in one run.

This machine's speed drifts by tens of percent between minutes, so a ratio of two separate runs says
little. This script measures both checkouts in turn, ``--rounds`` times, on the same videos (those of
``data_speed.py``), each in a fresh process with the other checkout's ``src`` first on ``PYTHONPATH``,
and reports the median of each and their ratio. The measurement is the one of ``data_speed.py``: one
loader worker with ``device_augment`` (decode, sample, crop, resize, hand over ``uint8`` + draws), or the
full augmentation in the worker for a checkout that predates ``device_augment``.

    git worktree add /tmp/before <commit>
    python benchmarks/compare_loader.py --other /tmp/before/src [--rounds 3] [--clips 48]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from data_speed import SETS, make_videos

SRC = Path(__file__).resolve().parents[1] / "src"

MEASURE = r"""
import json, sys, time, torch, warnings
warnings.simplefilter("ignore")
from torch.utils.data import DataLoader
from tc_clip.data.annotations import Sample
from tc_clip.data.dataset import VideoClipDataset, worker_init_fn
torch.set_num_threads(1)
paths, clips, decoder = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
samples = [Sample(p, 0) for p in paths]
try:
    dataset, mode = VideoClipDataset(samples, 16, 224, train=True, device_augment=True, decoder=decoder), "loader"
except TypeError:  # before device_augment: the whole augmentation runs in the worker
    dataset, mode = VideoClipDataset(samples, 16, 224, train=True), "all-CPU"
sampler = [i % len(samples) for i in range(clips + 1)]
loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=1, worker_init_fn=worker_init_fn)
count, start = -1, 0.0
for batch in loader:
    if count < 0:  # the worker has started and delivered its first clip
        count, start = 0, time.perf_counter()
        continue
    count += len(batch["label"])
print(json.dumps({"rate": count / (time.perf_counter() - start), "mode": mode}))
"""


def measure(src: Path, paths: list[str], clips: int, decoder: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(paths), str(clips), decoder],
        env=env, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", required=True, type=Path, help="the other checkout's src folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--decoder", default="auto", help="passed to both (a checkout without the option ignores it)")
    parser.add_argument("--dir", default="/tmp/tc_clip_bench")
    args = parser.parse_args(argv)
    print(f"this: {SRC}\nother: {args.other}\n{args.rounds} rounds, {args.clips} clips each, 1 worker, median")
    print(f"\n{'set':<22} {'other clips/s':>14} {'this clips/s':>13} {'this / other':>13}")
    for ext in SETS:
        width, height, codec, _ = SETS[ext]
        paths = make_videos(Path(args.dir) / ext, ext, args.videos)
        rates: dict[str, list[float]] = {"other": [], "this": []}
        modes = {}
        for _ in range(args.rounds):
            for key, src in (("other", args.other), ("this", SRC)):
                result = measure(src, paths, args.clips, args.decoder)
                rates[key].append(result["rate"])
                modes[key] = result["mode"]
        other, this = statistics.median(rates["other"]), statistics.median(rates["this"])
        label = f"{width}x{height} {codec} .{ext}"
        print(f"{label:<22} {other:>14.1f} {this:>13.1f} {this / other:>12.2f}x   "
              f"(other: {modes['other']}, rounds {', '.join(f'{r:.1f}' for r in rates['other'])}; "
              f"this: {modes['this']}, rounds {', '.join(f'{r:.1f}' for r in rates['this'])})", flush=True)


if __name__ == "__main__":
    main()
