"""TCCLIP speed and memory relative to open_clip's bare ``encode_image`` on the same frames.

Random ViT-B/16 weights, float32 on the CPU by default (the GPU settings are an option). Each case is
timed interleaved with its baseline (encode_image forward, or forward + backward for train steps) and
the medians are divided. Peak memory is measured per case in a fresh process.

    python benchmarks/model_speed.py                       # CPU, 2 threads, batch 2 x 8 frames
    python benchmarks/model_speed.py --device cuda --dtype bfloat16 --batch 8 --frames 16
    python benchmarks/model_speed.py --compile [--model tiny]   # torch.compile (inductor) against eager
    python benchmarks/model_speed.py --guard                # the per-step finite-weights check

``--compile`` times, per case in one fresh process, the eager model and ``torch.compile`` of it
(interleaved, after the compilation, which is reported) and prints compiled/eager. ``--guard`` times
``NonFiniteGuard``'s weights check on the trainable parameters against the train step it follows.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

CASES = [
    ("eval forward, 400 classes", "eval", 400),
    ("train step, 51 classes", "train", 51),
    ("train step, 400 classes", "train", 400),
]


def build(args, num_classes: int, reference_text: bool):
    import open_clip

    from tc_clip import TCCLIP
    from tc_clip.model.factory import TINY_CLIP_CFG

    torch.manual_seed(0)
    names = [f"action number {i} with a name" for i in range(num_classes)]
    if args.model == "tiny":
        model = TCCLIP.from_clip("tiny", class_names=names, config=TCCLIPConfigFor(args)).to(args.device)
        baseline = open_clip.CLIP(**TINY_CLIP_CFG).visual.to(args.device)
    else:
        clip = open_clip.create_model("ViT-B-16-quickgelu")
        model = TCCLIP(clip, names, TCCLIPConfigFor(args)).to(args.device)
        baseline = open_clip.create_model("ViT-B-16-quickgelu").visual.to(args.device)
    if reference_text:
        from reference import ref_text

        def text_per_video(vision):
            rows = []
            for b in range(vision.frame_embeds.shape[0]):
                condition = {layer: ctx[b] for layer, ctx in vision.context.items()}
                rows.append(ref_text(model, condition))
            return torch.stack(rows)

        model.encode_text = text_per_video
    return model, baseline


def TCCLIPConfigFor(args):
    from tc_clip import TCCLIPConfig

    if args.model == "tiny":  # the demo's k and r
        return TCCLIPConfig(num_frames=args.frames, num_context_tokens=16, merge_step=40)
    return TCCLIPConfig(num_frames=args.frames)


def size_of(args) -> int:
    return 64 if args.model == "tiny" else 224


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_case(args, mode: str, num_classes: int, reference_text: bool, queue=None):
    torch.set_num_threads(args.threads)
    model, baseline = build(args, num_classes, reference_text)
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(args.batch, args.frames, 3, size_of(args), size_of(args), generator=gen).to(args.device)
    frames = video.flatten(0, 1)
    autocast = torch.autocast(args.device.split(":")[0], dtype=getattr(torch, args.dtype),
                              enabled=args.dtype != "float32")

    def tc_step(net=model):
        if mode == "eval":
            model.eval()
            with torch.no_grad():
                net(video)
        else:
            model.train()
            with autocast:
                loss = net(video).logsumexp(-1).mean()
            loss.backward()
            model.zero_grad(set_to_none=True)

    def clip_step():
        if mode == "eval":
            baseline.eval()
            with torch.no_grad():
                baseline(frames)
        else:
            baseline.train()
            with autocast:
                loss = baseline(frames).square().mean()
            loss.backward()
            baseline.zero_grad(set_to_none=True)

    if mode == "eval" and args.dtype != "float32":
        model.to(getattr(torch, args.dtype))
        baseline.to(getattr(torch, args.dtype))
        video, frames = video.to(getattr(torch, args.dtype)), frames.to(getattr(torch, args.dtype))

    def timed(fn):
        sync(args.device)
        start = time.perf_counter()
        fn()
        sync(args.device)
        return time.perf_counter() - start

    if args.compile:
        return _compile_ratio(args, model, tc_step, timed, queue)
    if args.guard:
        return _guard_ratio(args, model, mode, tc_step, timed, queue)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    tc_step(), clip_step()  # warm-up (and the eval text cache)
    rss_start = _rss_mb()
    tc_times, clip_times = [], []
    for _ in range(args.repeats):
        clip_times.append(timed(clip_step))
        tc_times.append(timed(tc_step))
    result = {
        "tc": statistics.median(tc_times),
        "clip": statistics.median(clip_times),
        "peak_mb": (torch.cuda.max_memory_allocated() / 2**20) if args.device.startswith("cuda")
        else _peak_rss_mb() - rss_start + 0.0,
    }
    if queue is not None:
        queue.put(result)
    return result


def _compile_ratio(args, model, tc_step, timed, queue):
    """Eager against ``torch.compile`` of the same model, interleaved after the compilation."""
    from torch._dynamo.utils import counters

    compiled = torch.compile(model)
    start = time.perf_counter()
    tc_step(compiled)
    compile_s = time.perf_counter() - start
    tc_step()
    eager, fast = [], []
    for _ in range(args.repeats):
        eager.append(timed(tc_step))
        fast.append(timed(lambda: tc_step(compiled)))
    result = {"tc": statistics.median(fast), "clip": statistics.median(eager), "compile_s": compile_s,
              "graphs": counters["stats"]["unique_graphs"], "breaks": sum(counters["graph_break"].values())}
    if queue is not None:
        queue.put(result)
    return result


def _guard_ratio(args, model, mode, tc_step, timed, queue):
    """NonFiniteGuard's check of the trainable weights against the step it follows."""
    from tc_clip.callbacks.non_finite_guard import non_finite_tensors

    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    tc_step(), non_finite_tensors(params)
    steps, checks = [], []
    for _ in range(args.repeats):
        steps.append(timed(tc_step))
        checks.append(timed(lambda: non_finite_tensors(params)))
    result = {"tc": statistics.median(checks), "clip": statistics.median(steps), "peak_mb": 0.0,
              "params": sum(p.numel() for p in params.values())}
    if queue is not None:
        queue.put(result)
    return result


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return 0.0


def in_fresh_process(args, mode, num_classes, reference_text):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=run_case, args=(args, mode, num_classes, reference_text, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--model", default="ViT-B-16", choices=["ViT-B-16", "tiny"],
                        help="random ViT-B/16 weights, or the demo's tiny CLIP (64 px frames)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-reference", action="store_true", help="do not time the per-video text path")
    parser.add_argument("--compile", action="store_true", help="compiled against eager TCCLIP (torch.compile)")
    parser.add_argument("--guard", action="store_true", help="the finite-weights check against a train step")
    parser.add_argument("--cases", type=int, nargs="+", default=list(range(len(CASES))),
                        help="which cases to run (positions in: " + "; ".join(c[0] for c in CASES) + ")")
    args = parser.parse_args()
    size = size_of(args)
    print(f"model={args.model} device={args.device} dtype={args.dtype} batch={args.batch}x{args.frames} frames "
          f"of {size}x{size}, threads={args.threads}, median of {args.repeats}, torch {torch.__version__}")
    if args.compile or args.guard:
        what = ("compiled s", "eager s", "compiled/eager") if args.compile else ("check s", "step s", "check/step")
        print(f"{'case':32s} {what[0]:>10s} {what[1]:>9s} {what[2]:>15s}")
        for label, mode, classes in (CASES[i] for i in args.cases):
            if args.guard and mode == "eval":
                continue
            r = in_fresh_process(args, mode, classes, False)
            extra = (f"   (first call, compiling: {r['compile_s']:.0f} s; {r['graphs']} graphs, {r['breaks']} "
                     "graph breaks)" if args.compile else f"   ({r['params'] / 1e6:.0f} M trainable weights)")
            print(f"{label:32s} {r['tc']:10.3f} {r['clip']:9.3f} {r['tc'] / r['clip']:15.3f}{extra}", flush=True)
        return
    print(f"{'case':32s} {'text path':10s} {'TCCLIP s':>9s} {'encode_image s':>15s} {'ratio':>6s} "
          f"{'peak MB':>8s}")
    for label, mode, classes in (CASES[i] for i in args.cases):
        for reference in (False, True):
            if reference and args.skip_reference:
                continue
            r = in_fresh_process(args, mode, classes, reference)
            print(f"{label:32s} {'per-video' if reference else 'fast':10s} {r['tc']:9.3f} {r['clip']:15.3f} "
                  f"{r['tc'] / r['clip']:6.2f} {r['peak_mb']:8.0f}", flush=True)


if __name__ == "__main__":
    main()
