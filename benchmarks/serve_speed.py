"""``tc-clip serve`` throughput and latency: requests/s and p50/p99 latency at concurrency 1, 4 and 16, with
dynamic batching on (``--max_batch_size 8 --batch_timeout 0.05``) and off (``--max_batch_size 1``).

Models: the tiny random TC-CLIP (64x64 frames, 8 frames) and, with ``--vit_b16``, a random ViT-B/16 TC-CLIP
(224x224, 8 frames; slow on a CPU). Each server runs in its own process on 127.0.0.1 and answers uploads
of synthetic videos (the demo's moving shapes); every request is a real multipart upload.

    python benchmarks/serve_speed.py                      # tiny model, 48 requests per cell, 1 torch thread
    python benchmarks/serve_speed.py --vit_b16            # + ViT-B/16, 8 requests per cell (16 at concurrency 16)
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

SRC = Path(__file__).resolve().parents[1] / "src"
BATCHING = {"on": ["--max_batch_size", "8", "--batch_timeout", "0.05"], "off": ["--max_batch_size", "1"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path, extra: list[str], log: Path, threads: int, timeout: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "tc_clip.cli", "serve", "--model", str(folder), "--port", str(port),
               "--log_level", "warning", "--timeout", str(timeout), *extra]
    proc = subprocess.Popen(command, stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not start within 600 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=120)


def measure(url: str, videos: list[bytes], concurrency: int, total: int) -> dict[str, float]:
    def one(i: int) -> float:
        t = time.perf_counter()
        r = requests.post(url + "/predict", files={"video": ("clip.mp4", videos[i % len(videos)])}, timeout=600)
        r.raise_for_status()
        return time.perf_counter() - t

    one(0)  # warm-up
    total = max(total, concurrency)
    with ThreadPoolExecutor(concurrency) as pool:
        start_time = time.perf_counter()
        latencies = sorted(pool.map(one, range(total)))
        elapsed = time.perf_counter() - start_time
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]
    return {"rps": total / elapsed, "p50": statistics.median(latencies), "p99": p99}


def model_folder(kind: str, root: Path) -> Path:
    import torch

    from tc_clip import TCCLIP, inference
    from tc_clip.data import synthetic

    names = synthetic.class_names(5)
    if kind == "tiny":
        model = inference.tiny_model(names)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = TCCLIP.from_clip("ViT-B-16", None, names, quick_gelu=True, num_frames=8)
    return model.save_pretrained(root / kind)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vit_b16", action="store_true", help="also the random ViT-B/16 model")
    p.add_argument("--requests", type=int, default=48, help="timed requests per cell of the tiny model (at least "
                   "the concurrency), after one warm-up request")
    p.add_argument("--vit_b16_requests", type=int, default=8, help="the same for the ViT-B/16 model")
    p.add_argument("--timeout", type=float, default=1800, help="the servers' --timeout (a request's longest wait)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server's worker (OMP_NUM_THREADS)")
    args = p.parse_args(argv)
    from tc_clip import inference

    root = Path(tempfile.mkdtemp(prefix="tc-clip-serve-speed-"))
    videos = [inference.synthetic_video(root / f"v{i}.mp4", class_index=i % 5, seed=i)[0].read_bytes()
              for i in range(8)]
    kinds = ["tiny", "vit_b16"] if args.vit_b16 else ["tiny"]
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    for kind in kinds:
        folder = model_folder(kind, root)
        for batching, extra in BATCHING.items():
            proc, url = start(folder, extra, root / f"{kind}-{batching}.log", args.threads, args.timeout)
            try:
                for c in args.concurrency:
                    total = args.requests if kind == "tiny" else args.vit_b16_requests
                    results[kind, batching, c] = r = measure(url, videos, c, total)
                    print(f"{kind:8s} batching {batching:3s} concurrency {c:2d}: {r['rps']:7.2f} req/s  "
                          f"p50 {1000 * r['p50']:8.1f} ms  p99 {1000 * r['p99']:8.1f} ms", flush=True)
            finally:
                stop(proc)
    print("\nthroughput ratio, batching on / off:")
    for kind in kinds:
        ratios = [f"concurrency {c}: {results[kind, 'on', c]['rps'] / results[kind, 'off', c]['rps']:.2f}x"
                  for c in args.concurrency]
        print(f"  {kind}: " + ", ".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
