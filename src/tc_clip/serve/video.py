"""An uploaded video -> the model's input, read exactly as :func:`tc_clip.inference.read_clip` reads a file
(centred TSN sampling, resize + centre crop, the release's normalisation), plus the frames it sampled."""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch

from tc_clip.serve.limits import RequestError

__all__ = ["Clip", "read_upload"]


@dataclass
class Clip:
    """What one upload gave: ``video [1, T, 3, S, S]``, the sampled frame indices, the frame count and
    the duration in seconds (None when the container does not say)."""

    video: torch.Tensor
    frame_indices: list[int]
    num_frames: int
    duration_s: float | None


def _inspect(data: bytes) -> float | None:
    """Check the container without decoding: a video stream with at least one frame. Returns the duration
    in seconds from the header (None when unknown). Raises :class:`RequestError` (422)."""
    import av

    try:
        with av.open(io.BytesIO(data), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise RequestError(422, "the upload holds no video stream (or a video stream without frames)")
            stream = container.streams.video[0]
            duration = None
            if container.duration:
                duration = container.duration / av.time_base
            elif stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            if not any(packet.size for packet in container.demux(stream)):
                raise RequestError(422, "the video has no frames")
            return duration
    except RequestError:
        raise
    except Exception as err:  # noqa: BLE001 - av raises many types for data that is no video
        raise RequestError(422, f"the upload is not a readable video ({type(err).__name__}: {err})") from None


def read_upload(data: bytes, num_frames: int, size: int, max_duration_s: float, name: str = "the upload") -> Clip:
    """Decode ``num_frames`` frames of the video in ``data``; a bad video raises :class:`RequestError` (422)."""
    from tc_clip.data.decoding import VideoDecodeError, read_frames
    from tc_clip.data.transforms import decode_short_side, eval_indices, eval_transform

    if not data:
        raise RequestError(422, "the upload is empty")
    duration = _inspect(data)
    if duration is not None and duration > max_duration_s:
        raise RequestError(422, f"the video lasts {duration:.1f} s, over the limit of {max_duration_s:g} s")
    try:
        frames, n = read_frames(data, lambda count: eval_indices(count, num_frames), short_side=decode_short_side(size),
                                name=name)
    except (VideoDecodeError, ValueError) as err:
        raise RequestError(422, f"the video cannot be decoded ({err})") from None
    if frames.shape[0] != num_frames or frames.size == 0:
        raise RequestError(422, f"{name} gave {frames.shape[0]} frames, not {num_frames}")
    indices = [min(max(int(i), 0), n - 1) for i in eval_indices(n, num_frames)]
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    return Clip(eval_transform(clip, size=size, crops=1), indices, n, duration)
