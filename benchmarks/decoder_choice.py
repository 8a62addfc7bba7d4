"""Which decoder reads each codec faster on this machine: the evidence behind ``auto``'s rule
(:mod:`tc_clip.data.decoding`: PyAV for streams with B-frames, torchcodec for the others).

The same ten-second 30 fps camera-like footage (benchmarks/data_speed.py's generator) is encoded with
each codec a dataset may hold, with and without B-frames, at a prepared size (454x256) and, with
``--size``, any other. For each file it times decoding the 16 frames of a training clip (TSN sampling,
a fresh random clip each time) with PyAV and with torchcodec, alternating the two over ``--rounds``
rounds, and prints the medians, the ratio, the decoder ``auto`` picks for that stream and what its
probe costs (opening the file with PyAV and reading the B-frame flag).

    python benchmarks/decoder_choice.py [--clips 24] [--rounds 3] [--size 454 256] [--dir /tmp/tc_clip_bench]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import numpy as np
from data_speed import FRAMES, footage_frames

from tc_clip.data import decoding
from tc_clip.data.decoding import DecoderMismatchError, decode, torchcodec_status
from tc_clip.data.synthetic import write_video
from tc_clip.data.transforms import train_indices

#: name -> (extension, codec, options, gop); B-frames on where the codec's default has them
STREAMS = {
    "MPEG-4 (.avi)": ("avi", "mpeg4", {}, 12),
    "MPEG-4 with B-frames": ("avi", "mpeg4", {"bf": "2"}, 12),
    "H.264, x264 default (B-frames, GOP 250)": ("mp4", "libx264", {"preset": "medium", "crf": "23"}, None),
    "H.264, prepared (no B, GOP 16, fastdecode)": (
        "mp4", "libx264", {"preset": "medium", "crf": "18", "bf": "0", "tune": "fastdecode"}, 16),
    "HEVC, x265 default (B-frames)": (
        "mp4", "libx265", {"preset": "fast", "crf": "26", "x265-params": "log-level=error"}, None),
    "HEVC, no B-frames, GOP 16": (
        "mp4", "libx265", {"preset": "fast", "crf": "26", "x265-params": "bframes=0:log-level=error"}, 16),
    "VP9": ("webm", "libvpx-vp9", {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"}, None),
    "AV1": ("mp4", "libsvtav1", {"crf": "35", "preset": "10"}, None),
}


def encode_all(folder: Path, width: int, height: int) -> dict[str, str]:
    """One file per entry of :data:`STREAMS` (kept between runs); entries whose encoder is missing are left out."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    frames = None
    paths = {}
    for k, (name, (ext, codec, options, gop)) in enumerate(STREAMS.items()):
        if codec not in av.codecs_available:
            print(f"skipped {name}: this FFmpeg has no {codec} encoder")
            continue
        path = folder / f"{k}_{codec}_{width}x{height}.{ext}"
        if not path.exists():
            frames = np.stack(list(footage_frames(width, height, seed=0))) if frames is None else frames
            write_video(path.with_name("tmp_" + path.name), frames, codec=codec, options=options, gop_size=gop)
            path.with_name("tmp_" + path.name).replace(path)
        paths[name] = str(path)
    return paths


def decode_ms(path: str, backend: str, clips: int, seed: int) -> float | None:
    """ms per clip to decode 16 TSN-sampled frames of ``path``, ``clips`` clips; None where ``backend``
    refuses the file (torchcodec on AVI with B-frames, whose frames it returns out of order)."""
    rng = random.Random(seed)
    try:
        decode(path, [0], backend=backend)  # a first read: the OS cache holds the file for both decoders
    except DecoderMismatchError:
        return None
    start = time.perf_counter()
    for _ in range(clips):
        decode(path, lambda n: train_indices(n, FRAMES, rng), backend=backend)
    return 1000 * (time.perf_counter() - start) / clips


def probe_ms(path: str, repeats: int = 200) -> float:
    """ms to open a file with PyAV and read its B-frame flag: what ``auto`` adds to a file it probes."""
    from tc_clip.data.decoding import pyav

    start = time.perf_counter()
    for _ in range(repeats):
        container = pyav.open_video(path)
        pyav.has_b_frames(container)
        container.close()
    return 1000 * (time.perf_counter() - start) / repeats


def auto_pick(path: str) -> str:
    decoding._auto_pyav.clear()
    decoding._auto_family.clear()
    return decode(path, [0], backend="auto").backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24, help="clips timed per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    parser.add_argument("--size", type=int, nargs=2, default=[454, 256], metavar=("W", "H"))
    parser.add_argument("--dir", default="/tmp/tc_clip_bench")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    ok, why = torchcodec_status()
    if not ok:
        raise SystemExit(f"torchcodec does not work here ({why}): nothing to compare")
    width, height = args.size
    paths = encode_all(Path(args.dir) / "decoder_choice", width, height)
    print(f"{width}x{height}, 10 s at 30 fps, 16-frame TSN clips, {args.clips} clips x {args.rounds} rounds "
          f"alternated, medians, one thread\n")
    print("| stream | PyAV ms/clip | torchcodec ms/clip | torchcodec / PyAV | auto picks | auto's probe ms |")
    print("|---|---|---|---|---|---|")
    for name, path in paths.items():
        times: dict[str, list[float]] = {"pyav": [], "torchcodec": []}
        for r in range(args.rounds):
            for backend in (("pyav", "torchcodec") if r % 2 == 0 else ("torchcodec", "pyav")):
                times[backend].append(decode_ms(path, backend, args.clips, seed=r))
        pyav = statistics.median(times["pyav"])
        if None in times["torchcodec"]:
            print(f"| {name} | {pyav:.1f} | refused: misreads AVI B-frames | | {auto_pick(path)} | "
                  f"{probe_ms(path):.2f} |", flush=True)
            continue
        tc = statistics.median(times["torchcodec"])
        print(f"| {name} | {pyav:.1f} | {tc:.1f} | {tc / pyav:.2f} | {auto_pick(path)} | {probe_ms(path):.2f} |",
              flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
