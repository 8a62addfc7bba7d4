"""The torchcodec backend.

torchcodec (``VideoDecoder.get_frames_at``, the decoder the PyTorch project maintains) seeks to the
keyframe before each wanted frame and decodes from there in C++, with no Python per packet. It decodes
every frame on the way, though, where PyAV's reader skips the non-reference ones, so ``auto`` uses it
for streams without B-frames only. It needs the system's FFmpeg libraries, so it is used only where it
imports and decodes a small probe video (checked once per process, :func:`torchcodec_status`); PyAV is
the fallback that always works. The choice between the two is the dispatcher's (:mod:`tc_clip.data.decoding`).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

import numpy as np
import torch

from tc_clip.data.decoding.base import IndexSampler, Source, clamp_indices

__all__ = ["torchcodec_status", "read_frames"]


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


def read_frames(source: Source, indices: Sequence[int] | IndexSampler) -> tuple[np.ndarray, int]:
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
    wanted = clamp_indices(indices, n)
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
