"""One GPU check: everything the CPU cannot tell, in one Markdown table (sized for under 8 minutes on one
GPU; not yet timed on one).

- model speed at batch 8 x 16 frames of 224 px in bf16 (autocast, as ``bf16-mixed`` trains), eager and
  ``torch.compile``d: TCCLIP's eval forward (400 classes) and train step (forward + backward) against
  open_clip's bare ``encode_image`` on the same frames, with peak memory;
- 30 optimiser steps of ``tc-clip fit`` with a random ViT-B/16 on synthetic videos in ``bf16-mixed``:
  clips/s, peak memory, whether every loss was finite;
- the loader feeding that run with 4 and 8 workers: the time each step waited for its batch;
- decoding 16-frame clips of 1280x720 H.264: torchcodec's CUDA decoder (NVDEC) against torchcodec and
  PyAV on the CPU, where torchcodec's CUDA build works (else the row says why it was skipped).

``--device cpu --tiny`` (the default without CUDA) runs every line with a tiny model and small sizes on
the CPU in well under a minute, so CI keeps the script working until a GPU runs it. The exit status is 1
when a check failed (its row says how).

    python benchmarks/gpu_check.py                      # on a GPU (make gpu-check)
    python benchmarks/gpu_check.py --device cpu --tiny  # what CI runs
"""

from __future__ import annotations

import argparse
import datetime
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass(frozen=True)
class Profile:
    model_name: str
    batch: int
    frames: int
    size: int
    eval_classes: int
    train_classes: int
    repeats: int
    steps: int
    warmup: int
    workers: tuple[int, ...]
    video: tuple[int, int, int]  # synthetic training videos: width, height, frames
    footage: tuple[int, int, int]  # decoding check: width, height, seconds
    compile_backend: str
    model_args: tuple[str, ...] = ()


GPU = Profile("ViT-B-16", 8, 16, 224, 400, 400, 10, 30, 5, (4, 8), (320, 240, 48), (1280, 720, 4), "inductor")
TINY = Profile("tiny", 2, 8, 64, 5, 5, 1, 5, 2, (1, 2), (64, 48, 16), (160, 96, 1), "eager",
               ("--model.config.num_context_tokens", "16", "--model.config.merge_step", "40"))


@dataclass
class Table:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    failed: bool = False

    def add(self, check: str, setting: str, result: str, compare: str = "", memory: str = "") -> None:
        self.rows.append((check, setting, result, compare, memory))
        self.failed |= result.startswith("FAILED")

    def markdown(self) -> str:
        head = ("check", "setting", "result", "compared with", "peak memory")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in self.rows])


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak(device: str) -> str:
    return f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.startswith("cuda") else "n/a (CPU)"


def timed(fn, device: str, repeats: int) -> tuple[float, float]:
    """(seconds of the first call, which compiles; median seconds of ``repeats`` more after a warm-up)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - start
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def model_speed(p: Profile, device: str, table: Table) -> None:
    """TCCLIP against open_clip's encode_image, eval forward and train step, eager and compiled."""
    from tc_clip import TCCLIP, TCCLIPConfig
    from tc_clip.model.factory import create_clip

    shape = f"{p.batch}x{p.frames} frames of {p.size} px, bf16 autocast"
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(p.batch, p.frames, 3, p.size, p.size, generator=gen).to(device)
    frames = video.flatten(0, 1)
    for mode, classes in (("eval forward", p.eval_classes), ("train step", p.train_classes)):
        check = f"model: {mode}, {classes} classes"
        torch.manual_seed(0)
        tiny = {"num_context_tokens": 16, "merge_step": 40} if p.model_name == "tiny" else {}
        config = TCCLIPConfig(num_frames=p.frames, **tiny)
        model = TCCLIP.from_clip(p.model_name, class_names=[f"action {i}" for i in range(classes)],
                                 config=config).to(device)
        clip = create_clip(p.model_name)[0].to(device)
        model.train(mode == "train step")
        clip.train(mode == "train step")

        def step(fn, inputs, mode=mode):
            if mode == "eval forward":
                with torch.no_grad(), autocast:
                    fn(inputs)
                return
            with autocast:
                out = fn(inputs)
            out.float().square().mean().backward()

        seconds: dict[bool, float] = {}
        for compiled in (False, True):
            label = f"compiled ({p.compile_backend})" if compiled else "eager"
            try:
                tc = torch.compile(model, backend=p.compile_backend) if compiled else model
                enc = torch.compile(clip.encode_image, backend=p.compile_backend) if compiled else clip.encode_image
                reset_peak(device)
                first, tc_s = timed(lambda tc=tc: step(tc, video), device, p.repeats)
                memory = peak(device)
                _, clip_s = timed(lambda enc=enc: step(enc, frames), device, p.repeats)
            except Exception as err:  # noqa: BLE001 - the table says what failed
                table.add(check, f"TCCLIP {label}, {shape}", f"FAILED: {type(err).__name__}: {err}"[:300])
                continue
            compare = f"{tc_s / clip_s:.2f}x encode_image {label} ({1000 * clip_s:.1f} ms)"
            if compiled and False in seconds:
                compare += f"; {tc_s / seconds[False]:.2f}x TCCLIP eager; first call {first:.0f} s"
            seconds[compiled] = tc_s
            table.add(check, f"TCCLIP {label}, {shape}", f"{1000 * tc_s:.1f} ms", compare, memory)
            model.zero_grad(set_to_none=True)
            clip.zero_grad(set_to_none=True)
        del model, clip
        torch._dynamo.reset()


class StepClock(Callback):
    """Per optimiser step: the time spent waiting for the batch (from the end of the previous step to the
    start of this one: the loader, the copy to the device and the device augmentation) and the time of
    the step itself (synchronised); losses; the peak memory of the run."""

    def __init__(self, warmup: int):
        self.warmup, self.waits, self.steps, self.losses = warmup, [], [], []
        self._end = self._start = None
        self.batch, self.memory = 0, ""

    def on_train_start(self, trainer, pl_module):
        reset_peak(str(pl_module.device))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        sync(str(pl_module.device))
        self._start = time.perf_counter()
        if self._end is not None and trainer.global_step >= self.warmup:
            self.waits.append(self._start - self._end)
        self.batch = len(batch["label"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        sync(str(pl_module.device))
        self._end = time.perf_counter()
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss.detach().float()))
        if trainer.global_step > self.warmup:
            self.steps.append(self._end - self._start)

    def on_train_end(self, trainer, pl_module):
        self.memory = peak(str(pl_module.device))


def synthetic_lists(p: Profile, folder: Path) -> list[str]:
    """A synthetic dataset and a training list long enough for one epoch of ``p.steps`` batches."""
    from tc_clip.data import synthetic

    width, height, frames = p.video
    paths = synthetic.generate(folder / "videos", num_classes=5, videos_per_class=8, val_per_class=1,
                               num_frames=frames, width=width, height=height)
    lines = Path(paths.train_list).read_text().split("\n")
    lines = [line for line in lines if line.strip()]
    repeats = math.ceil(p.steps * p.batch / len(lines)) + 1
    train = folder / "train_repeated.txt"
    train.write_text("\n".join(lines * repeats) + "\n")
    return ["--data", "tc_clip.data.VideoDataModule", "--data.train_list", str(train),
            "--data.val_list", paths.val_list, "--data.labels", paths.labels, "--data.root", paths.root]


def fit_check(p: Profile, device: str, folder: Path, table: Table) -> None:
    """``tc-clip fit`` for ``p.steps`` optimiser steps in bf16-mixed, once per loader worker count."""
    from tc_clip.cli import build_cli

    data = synthetic_lists(p, folder)
    accelerator = "gpu" if device.startswith("cuda") else "cpu"
    for workers in p.workers:
        clock = StepClock(p.warmup)
        root = tempfile.mkdtemp(prefix=f"fit{workers}-", dir=folder)
        args = [
            "fit", *data, "--data.num_frames", str(p.frames), "--data.input_size", str(p.size),
            "--data.batch_size", str(p.batch), "--data.num_workers", str(workers),
            "--model.model_name", p.model_name, *p.model_args,
            "--trainer.accelerator", accelerator, "--trainer.devices", "1", "--trainer.precision", "bf16-mixed",
            "--trainer.max_steps", str(p.steps), "--trainer.max_epochs", "1", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.num_sanity_val_steps", "0", "--trainer.default_root_dir", root,
            "--checkpoint.save_top_k", "0", "--last_every_n_steps", "0",
        ]
        check = f"fit: {p.steps} steps, random {p.model_name}, bf16-mixed"
        setting = f"batch {p.batch}x{p.frames}x{p.size} px, {workers} loader workers"
        argv, sys.argv = sys.argv, sys.argv[:1]  # the options are passed as args: LightningCLI must not see ours
        try:
            build_cli(args, trainer_defaults={"default_root_dir": root, "callbacks": [clock]})
        except (Exception, SystemExit) as err:  # noqa: BLE001 - the table says what failed
            table.add(check, setting, f"FAILED: {type(err).__name__}: {err}"[:300])
            continue
        finally:
            sys.argv = argv
        finite = all(math.isfinite(v) for v in clock.losses)
        step, wait = sum(clock.steps), sum(clock.waits)
        rate = p.batch * len(clock.steps) / (step + wait) if clock.steps else float("nan")
        result = (f"{rate:.1f} clips/s, loss {clock.losses[0]:.2f} -> {clock.losses[-1]:.2f}, "
                  f"{'every loss finite' if finite else 'FAILED: a loss was not finite'}")
        compare = (f"waited {1000 * wait / max(len(clock.waits), 1):.0f} ms per step for data "
                   f"({100 * wait / (step + wait):.0f} % of the time)" if clock.waits else "")
        table.add(check, setting, result if finite else "FAILED: " + result, compare, clock.memory)


def decode_check(p: Profile, device: str, folder: Path, table: Table) -> None:
    """16-frame training clips of H.264 footage: PyAV, torchcodec on the CPU, torchcodec on the GPU."""
    from data_speed import REALISTIC, make_footage

    from tc_clip.data.decoding import read_frames, torchcodec_status
    from tc_clip.data.transforms import train_indices

    width, height, seconds = p.footage
    bitrate = next((b for w, h, b in REALISTIC.values() if (w, h) == (width, height)), None)
    paths = [make_footage(folder / f"footage{k}.mp4", width, height, seed=k, seconds=seconds, bitrate=bitrate)
             for k in range(2)]
    rate = f"{bitrate / 1e6:.2f} Mb/s" if bitrate else "CRF 23"
    check = f"decode: 16-frame clips, {width}x{height} H.264 (x264 medium, B-frames, {rate})"
    clips = 2 * p.repeats

    def per_clip(read) -> float:
        rng = random.Random(0)
        read(paths[0], [0])
        sync(device)
        start = time.perf_counter()
        for k in range(clips):
            read(paths[k % 2], rng)
        sync(device)
        return (time.perf_counter() - start) / clips

    def pyav(path, rng):
        return read_frames(path, [0] if isinstance(rng, list) else lambda n: train_indices(n, 16, rng),
                           backend="pyav")

    def torchcodec_on(dev):
        from torchcodec.decoders import VideoDecoder

        def read(path, rng):
            decoder = VideoDecoder(path, device=dev, seek_mode="exact")
            idx = [0] if isinstance(rng, list) else train_indices(decoder.metadata.num_frames, 16, rng)
            return decoder.get_frames_at(indices=[int(i) for i in idx]).data

        return read

    base = per_clip(pyav)
    table.add(check, "PyAV on the CPU (tc-clip's pyav decoder)", f"{1000 * base:.1f} ms per clip")
    ok, why = torchcodec_status()
    runs = [("cpu", "torchcodec on the CPU")]
    runs.append(("cuda", "torchcodec CUDA (NVDEC)") if device.startswith("cuda") else (None, "torchcodec CUDA (NVDEC)"))
    for dev, label in runs:
        if not ok:
            table.add(check, label, f"skipped: torchcodec does not work here ({why})")
            continue
        if dev is None:
            table.add(check, label, "skipped: no CUDA device (this run is on the CPU)")
            continue
        try:
            s = per_clip(torchcodec_on(dev))
        except Exception as err:  # noqa: BLE001 - e.g. a CPU-only torchcodec build, or no NVDEC
            table.add(check, label, f"skipped: {type(err).__name__}: {err}"[:300])
            continue
        table.add(check, label, f"{1000 * s:.1f} ms per clip", f"{base / s:.2f}x PyAV")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and small sizes (default on the CPU)")
    parser.add_argument("--checks", nargs="+", choices=["model", "fit", "decode"], default=["model", "fit", "decode"])
    parser.add_argument("--dir", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here (use --device cpu --tiny)")
    p = TINY if args.tiny or not args.device.startswith("cuda") else GPU
    if not args.device.startswith("cuda"):
        torch.set_num_threads(1)  # tiny models gain nothing from threads, and a busy core makes OpenMP spin
    start = time.perf_counter()
    table = Table()
    with tempfile.TemporaryDirectory(prefix="gpu_check", dir=args.dir) as tmp:
        if "model" in args.checks:
            model_speed(p, args.device, table)
        if "fit" in args.checks:
            fit_check(p, args.device, Path(tmp), table)
        if "decode" in args.checks:
            decode_check(p, args.device, Path(tmp), table)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"\ngpu_check {datetime.date.today()} on {name} ({'tiny profile' if p is TINY else 'full profile'}), "
          f"torch {torch.__version__}, {time.perf_counter() - start:.0f} s\n")
    print(table.markdown())
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
