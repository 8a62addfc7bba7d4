"""The torchcodec decoder backend, and the choice between it and PyAV.

torchcodec (``VideoDecoder.get_frames_at``, the decoder the PyTorch project maintains) seeks to the
keyframe before each wanted frame and decodes from there in C++, with no Python per packet. It decodes
every frame on the way, though, where PyAV's reader skips the non-reference ones, so ``auto`` uses it
for streams without B-frames only. It needs the system's FFmpeg libraries, so it is used only where it
imports and decodes a small probe video (checked once per process, :func:`torchcodec_status`); PyAV is
the fallback that always works.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

__all__ = ["BACKENDS", "Backend", "resolve_backend", "describe_backend", "torchcodec_status", "read_frames"]

Backend = Literal["auto", "torchcodec", "pyav"]
BACKENDS: tuple[str, ...] = ("auto", "torchcodec", "pyav")


def _probe_video() -> bytes:
    """Two 16 x 16 MPEG-4 frames in an AVI, in memory."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 100 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


@functools.cache
def torchcodec_status() -> tuple[bool, str]:
    """``(usable, description)``: whether torchcodec imports and decodes a probe video here."""
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder
    except Exception as e:  # ImportError, or OSError/RuntimeError when FFmpeg's libraries are missing
        return False, f"torchcodec unavailable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    try:
        frames = VideoDecoder(_probe_video(), dimension_order="NHWC").get_frames_at([0, 1]).data
        if tuple(frames.shape) != (2, 16, 16, 3):
            return False, f"torchcodec {torchcodec.__version__} decoded the probe video wrongly"
    except Exception as e:
        return False, f"torchcodec {torchcodec.__version__} cannot decode ({type(e).__name__}: {e})"
    return True, f"torchcodec {torchcodec.__version__}"


def resolve_backend(backend: str = "auto") -> str:
    """What ``backend`` means here: ``"pyav"``, ``"torchcodec"``, or ``"auto"`` (the per-stream choice
    of :func:`tc_clip.data.decoding.read_frames`), which is ``"pyav"`` where torchcodec does not work.
    The environment variable ``TC_CLIP_DECODER`` overrides ``"auto"``. Forcing torchcodec where it does
    not work is an error."""
    if backend == "auto":
        backend = os.environ.get("TC_CLIP_DECODER", "auto") or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"TC_CLIP_DECODER={backend!r}: expected one of {BACKENDS}")
        if backend == "auto":
            return "auto" if torchcodec_status()[0] else "pyav"
    if backend == "pyav":
        return backend
    if backend != "torchcodec":
        raise ValueError(f"decoder {backend!r}: expected one of {BACKENDS}")
    ok, why = torchcodec_status()
    if not ok:
        raise RuntimeError(f"decoder 'torchcodec' was asked for but {why}; use 'pyav' or 'auto'")
    return backend


def _pyav() -> str:
    import av

    return f"pyav {av.__version__}"


def describe_backend(backend: str = "auto") -> str:
    """Which decoder ``backend`` runs, with versions (for logs and benchmarks)."""
    chosen = resolve_backend(backend)
    if chosen == "torchcodec":
        return torchcodec_status()[1]
    if chosen == "auto":
        return f"{_pyav()} for streams with B-frames, {torchcodec_status()[1]} for the others"
    return _pyav()


def read_frames(
    source: str | os.PathLike | bytes, indices: Sequence[int] | Callable[[int], Sequence[int]]
) -> tuple[np.ndarray, int]:
    """The frames ``indices`` at the decoded size (``uint8 [K, H, W, 3]``) and the frame count, by
    torchcodec in exact seek mode (the frame count and frame ``i`` are those of a full decode; rotation
    metadata applied). Raises torchcodec's errors."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(
        source if isinstance(source, bytes) else str(source),
        dimension_order="NHWC",
        seek_mode="exact",
        num_ffmpeg_threads=1,
    )
    n = int(decoder.metadata.num_frames or 0)
    if n <= 0:
        raise RuntimeError("the video stream has no frames")
    wanted = [min(max(int(i), 0), n - 1) for i in (indices(n) if callable(indices) else indices)]
    unique = sorted(set(wanted))
    if not unique:
        h, w = decoder.metadata.height or 0, decoder.metadata.width or 0
        return np.zeros((0, h, w, 3), np.uint8), n
    frames = decoder.get_frames_at(unique).data  # uint8 [K, H, W, C]
    if frames.shape[-1] == 1:  # single-plane output: grayscale to RGB
        frames = frames.expand(-1, -1, -1, 3)
    if wanted != unique:
        pos = {f: k for k, f in enumerate(unique)}
        frames = frames[torch.tensor([pos[i] for i in wanted])]
    return np.ascontiguousarray(frames.numpy()), n
