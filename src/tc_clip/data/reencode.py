"""One video re-encoded for training (see :mod:`tc_clip.data.prepare`): geometry, the two encoders
(PyAV and the ``ffmpeg`` binary) and the PSNR of the result against its source."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

__all__ = ["ENCODERS", "PRESETS", "TUNES", "PrepareSettings", "container_format", "encode", "measure_psnr",
           "target_size", "tool_versions"]

ENCODERS = ("pyav", "ffmpeg")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
TUNES = ("fastdecode", "film", "animation", "grain", "stillimage", "psnr", "ssim", "none")
#: extension -> FFmpeg muxer; the others (.webm, .mpg, .mpeg, .wmv: containers without H.264) get Matroska
_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".flv": "flv",
               ".3gp": "3gp"}
_SCALER = "BICUBIC"  # swscale's bicubic: the ffmpeg binary's default scaler, used by both encoders


@dataclass(frozen=True)
class PrepareSettings:
    """How videos are re-encoded (defaults: mmaction2's dense preparation, at visually lossless quality).

    ``tune="fastdecode"`` (x264: CAVLC instead of CABAC, no deblocking, no weighted prediction): measured
    on the benchmark's realistic sets at CRF 18, files 17 % larger at the same PSNR and decoded about twice
    as fast by PyAV; ``"none"`` leaves x264's default."""

    short_side: int = 256
    gop: int = 16
    bframes: int = 0
    crf: float = 18
    preset: str = "medium"
    tune: str = "fastdecode"
    encoder: str = "pyav"

    def validate(self) -> None:
        problems = []
        if self.short_side < 16:
            problems.append(f"short_side must be at least 16, got {self.short_side}")
        if self.gop < 1:
            problems.append(f"gop must be at least 1, got {self.gop}")
        if not 0 <= self.bframes <= 16:
            problems.append(f"bframes must be within 0..16, got {self.bframes}")
        if not 0 <= self.crf <= 51:
            problems.append(f"crf must be within 0..51 (libx264), got {self.crf:g}")
        if self.preset not in PRESETS:
            problems.append(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.tune not in TUNES:
            problems.append(f"tune must be one of {', '.join(TUNES)}, got {self.tune!r}")
        if self.encoder not in ENCODERS:
            problems.append(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def key(self) -> str:
        """What decides the output's content (a manifest entry made with other settings is redone)."""
        return ",".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))


def container_format(path: str | os.PathLike) -> str:
    return _CONTAINERS.get(Path(path).suffix.lower(), "matroska")


def target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """The output size of a ``width`` x ``height`` picture: short side ``short_side`` unless already
    smaller (never upscaled), both sides even, aspect ratio kept as well as even sides allow."""
    scale = min(1.0, short_side / min(width, height))

    def even(v: float, cap: int) -> int:
        return max(2, min(2 * round(v / 2), cap - cap % 2))

    return even(width * scale, width), even(height * scale, height)


@dataclass(frozen=True)
class _Geometry:
    quarter: int  # display rotation in quarter turns (counter-clockwise, PyAV's and np.rot90's sense)
    width: int  # output (displayed) size
    height: int

    @property
    def unrotated(self) -> tuple[int, int]:
        return (self.height, self.width) if self.quarter % 2 else (self.width, self.height)


def _geometry(frame: av.VideoFrame, short_side: int) -> _Geometry:
    quarter = round(int(getattr(frame, "rotation", 0) or 0) / 90) % 4
    w, h = (frame.height, frame.width) if quarter % 2 else (frame.width, frame.height)
    return _Geometry(quarter, *target_size(w, h, short_side))


def _scaled(frame: av.VideoFrame, geo: _Geometry, rf: VideoReformatter) -> av.VideoFrame:
    """The frame at the output size in yuv420p, rotation applied (the encoder's input, the PSNR's reference)."""
    if not geo.quarter:
        return rf.reformat(frame, geo.width, geo.height, "yuv420p", interpolation=_SCALER)
    w, h = geo.unrotated
    rgb = np.rot90(rf.reformat(frame, w, h, "rgb24", interpolation=_SCALER).to_ndarray(), k=geo.quarter)
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")


def _open_input(path: str, threads: int) -> tuple[Any, Any]:
    container = av.open(path, metadata_errors="ignore")
    if not container.streams.video:
        container.close()
        raise ValueError(f"no video stream in {path}")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    return container, stream


def _encode_pyav(source: str, tmp: str, fmt: str, s: PrepareSettings, threads: int) -> dict[str, Any]:
    ic, ist = _open_input(source, threads)
    options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
    try:
        with av.open(tmp, "w", format=fmt, options=options) as oc:
            ost, geo, rf, frames, last = None, None, VideoReformatter(), 0, None
            rate = ist.average_rate or ist.guessed_rate or 30
            tb = ist.time_base or 1 / rate
            for frame in ic.decode(ist):
                if ost is None:
                    geo = _geometry(frame, s.short_side)
                    ost = oc.add_stream("libx264", rate=rate)
                    ost.width, ost.height, ost.pix_fmt = geo.width, geo.height, "yuv420p"
                    ost.codec_context.time_base = ost.time_base = tb
                    ost.codec_context.gop_size = s.gop
                    ost.codec_context.max_b_frames = s.bframes
                    ost.options = {"crf": f"{s.crf:g}", "preset": s.preset, "threads": str(threads),
                                   **({"tune": s.tune} if s.tune != "none" else {})}
                pts = frame.pts
                if pts is None or (last is not None and pts <= last):
                    pts = 0 if last is None else last + 1
                out = _scaled(frame, geo, rf)
                out.pts, out.time_base, last = pts, tb, pts
                for packet in ost.encode(out):
                    oc.mux(packet)
                frames += 1
            if ost is None:
                raise ValueError(f"no frame could be decoded from {source}")
            for packet in ost.encode():
                oc.mux(packet)
        src = _source(ist)
    finally:
        ic.close()
    return _info(src, geo, _count_packets(tmp, geo, frames))


@cache
def _ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def _die_with_parent() -> None:  # pragma: no cover - runs in the ffmpeg child
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _encode_ffmpeg(source: str, tmp: str, fmt: str, s: PrepareSettings, threads: int) -> dict[str, Any]:
    ic, ist = _open_input(source, 1)  # the geometry: the first frame's size and rotation
    try:
        first = next(iter(ic.decode(ist)), None)
        if first is None:
            raise ValueError(f"no frame could be decoded from {source}")
        geo, src = _geometry(first, s.short_side), _source(ist)
    finally:
        ic.close()
    cmd = [
        _ffmpeg() or "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-threads", str(threads),
        "-i", source, "-map", "0:v:0", "-an", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1",
        "-vf", f"scale={geo.width}:{geo.height}:flags=bicubic,format=yuv420p", "-fps_mode", "passthrough",
        "-c:v", "libx264", "-preset", s.preset, *(["-tune", s.tune] if s.tune != "none" else []),
        "-crf", f"{s.crf:g}", "-g", str(s.gop), "-bf", str(s.bframes),
        "-threads", str(threads), *(["-movflags", "+faststart"] if fmt in ("mp4", "mov") else []),
        "-f", fmt, tmp,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_die_with_parent)  # noqa: PLW1509
    if done.returncode:
        raise ValueError(f"ffmpeg failed on {source}: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    return _info(src, geo, _count_packets(tmp, geo, None))


def _count_packets(path: str, geo: _Geometry, expected: int | None) -> int:
    """Check the written file: one H.264 stream of the planned size, no audio, and one packet per frame."""
    with av.open(path) as c:
        streams = c.streams
        if len(streams.video) != 1 or streams.audio or streams.video[0].codec_context.name != "h264":
            raise ValueError(f"unexpected streams in the output: {[s.type for s in streams]}")
        size = (streams.video[0].codec_context.width, streams.video[0].codec_context.height)
        if size != (geo.width, geo.height):
            raise ValueError(f"output is {size[0]}x{size[1]}, planned {geo.width}x{geo.height}")
        n = sum(1 for p in c.demux(streams.video[0]) if p.size)
    if n == 0 or (expected is not None and n != expected):
        raise ValueError(f"the output holds {n} frames, {expected} were encoded")
    return n


def _source(ist: Any) -> dict[str, Any]:
    """The source stream's description (read while its container is open)."""
    cc, rate = ist.codec_context, ist.average_rate or ist.guessed_rate
    return {"source_codec": cc.name, "source_width": cc.width, "source_height": cc.height,
            "fps": round(float(rate), 3) if rate else None}


def _info(source: dict[str, Any], geo: _Geometry, frames: int) -> dict[str, Any]:
    return {**source, "rotation": geo.quarter * 90, "width": geo.width, "height": geo.height, "frames": frames}


def encode(source: str, tmp: str, fmt: str, settings: PrepareSettings, threads: int = 1) -> dict[str, Any]:
    """Re-encode ``source`` into ``tmp`` (muxer ``fmt``) with ``settings``; returns the geometry and
    frame count. Raises on an unreadable source or a failed encode."""
    if settings.encoder == "ffmpeg":
        return _encode_ffmpeg(source, tmp, fmt, settings, threads)
    return _encode_pyav(source, tmp, fmt, settings, threads)


def _frames_at(path: str, picks: list[int], geo: _Geometry | None) -> list[np.ndarray]:
    """RGB frames ``picks`` (sorted) of ``path``; with ``geo``, resized and rotated as the encoder's input."""
    wanted, out, rf = set(picks), [], VideoReformatter()
    ic, ist = _open_input(path, 1)
    try:
        for i, frame in enumerate(ic.decode(ist)):
            if i in wanted:
                img = _scaled(frame, geo, rf) if geo is not None else frame
                out.append(img.to_ndarray(format="rgb24"))
            if i >= picks[-1]:
                break
    finally:
        ic.close()
    return out


def _frames_ffmpeg(path: str, picks: list[int], geo: _Geometry) -> list[np.ndarray]:
    """RGB frames ``picks`` of ``path`` resized by the ffmpeg binary's own filters, as it encoded them
    (its scaler differs from PyAV's by a few grey levels on fine texture)."""
    select = "+".join(f"eq(n,{p})" for p in picks)
    cmd = [_ffmpeg() or "ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-map", "0:v:0",
           "-vf", f"scale={geo.width}:{geo.height}:flags=bicubic,format=yuv420p,select='{select}'",
           "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"]
    done = subprocess.run(cmd, capture_output=True, preexec_fn=_die_with_parent)  # noqa: PLW1509
    if done.returncode:
        raise ValueError(f"ffmpeg could not read {path}: {done.stderr.decode(errors='replace').strip()[-300:]}")
    rows, size = geo.height * 3 // 2, geo.width * geo.height * 3 // 2
    raw = np.frombuffer(done.stdout, np.uint8)
    return [av.VideoFrame.from_ndarray(raw[k : k + size].reshape(rows, geo.width), format="yuv420p")
            .to_ndarray(format="rgb24") for k in range(0, len(raw) - size + 1, size)]


def measure_psnr(source: str, output: str, info: dict[str, Any], encoder: str = "pyav", count: int = 8) -> float:
    """Mean PSNR (dB, RGB) of ``count`` frames spread over ``output`` against the same frames of
    ``source`` resized and rotated alike by ``encoder``: what the encoding lost, not the downscale."""
    n, k = int(info["frames"]), min(count, int(info["frames"]))
    picks = sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})
    geo = _Geometry(int(info["rotation"]) // 90, int(info["width"]), int(info["height"]))
    reference = _frames_ffmpeg if encoder == "ffmpeg" else _frames_at
    ref, got = reference(source, picks, geo), _frames_at(output, picks, None)
    if len(ref) != len(got) or not got:
        raise ValueError(f"cannot compare {output} with {source}: {len(got)} and {len(ref)} frames")
    values = []
    for a, b in zip(ref, got, strict=True):
        mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
        values.append(100.0 if mse == 0 else 10 * math.log10(255.0**2 / mse))
    return sum(values) / len(values)


def tool_versions(encoder: str) -> dict[str, str]:
    """The versions that made the files (for the manifest)."""
    from tc_clip import __version__

    lib = ".".join(map(str, av.library_versions.get("libavcodec", ())))
    tools = {"tc_clip": __version__, "pyav": f"PyAV {av.__version__}, libavcodec {lib}"}
    if encoder == "ffmpeg" or _ffmpeg():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run([_ffmpeg() or "ffmpeg", "-version"], capture_output=True, text=True, timeout=30)
            tools["ffmpeg"] = done.stdout.splitlines()[0] if done.stdout else "?"
    return tools
