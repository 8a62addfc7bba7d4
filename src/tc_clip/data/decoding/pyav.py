"""The PyAV backend: decoding only the frames a clip needs.

:func:`read_frames` first demuxes the whole video stream (cheap: no decoding), which gives the exact
number of frames and, for every frame in presentation order, its packet and the keyframe it depends on.
It then decodes, for every wanted frame, only the packets from the keyframe before it up to the frame
itself (consecutive wanted frames in one group of pictures share one run), lets the decoder drop
non-reference frames that are not wanted (``skip_frame=NONREF``) and converts only the wanted frames to
RGB. Frames are identified by presentation timestamp, so B-frame reordering and variable frame rate
are handled: frame ``i`` is the ``i``-th frame in presentation order, whatever its timestamp.

If anything about a file does not fit this plan (packets without timestamps, timestamps that are not
presentation times, a wanted frame that the decoder never returned, ...) the reader falls back to
decoding the stream sequentially, still converting only the wanted frames. Rotation metadata is
applied, grayscale and odd-sized videos come out as RGB.
PyAV always works (it ships its FFmpeg), so it is also the fallback of :mod:`tc_clip.data.decoding`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from tc_clip.data.decoding.base import (
    IndexSampler,
    Source,
    VideoDecodeError,
    VideoInfo,
    check_exists,
    clamp_indices,
    source_name,
)

__all__ = ["describe", "has_b_frames", "open_video", "probe", "read_all_frames", "read_frames"]


def open_video(path: Source, name: str | None = None) -> av.container.InputContainer:
    """An open PyAV container of a video file or its bytes, with a video stream."""
    check_exists(path)
    try:
        src = io.BytesIO(path) if isinstance(path, bytes) else str(path)
        container = av.open(src, metadata_errors="ignore")
    except Exception as e:  # av.error.* and OSError
        raise VideoDecodeError(f"cannot open video {source_name(path, name)}: {e}") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"no video stream in {source_name(path, name)}")
    return container


def _to_rgb(frame: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    """RGB at the decoded size, rotation applied. One reformatter per video keeps one swscale context
    (a fresh one per frame costs more than the conversion itself)."""
    img = reformatter.reformat(frame, format="rgb24").to_ndarray()
    quarter = round(int(getattr(frame, "rotation", 0) or 0) / 90) % 4
    if quarter:
        # PyAV's rotation is counter-clockwise; np.rot90 with k > 0 rotates counter-clockwise as well.
        img = np.ascontiguousarray(np.rot90(img, k=quarter))
    return img


@dataclass
class _Index:
    packets: list  # av.Packet in decode order
    ts: list[int]  # timestamp of each packet (decode order)
    pres_ts: list[int]  # sorted timestamps = presentation order
    pos_of_ts: dict[int, int]  # timestamp -> decode position
    last_key: list[int]  # decode position of the keyframe at or before each position
    by_timestamp: bool  # whether the timestamps identify frames (else: decode sequentially)


def _index(container, stream) -> _Index | None:
    packets, ts, keys = [], [], []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        t = packet.pts if packet.pts is not None else packet.dts
        if t is None:
            return None
        packets.append(packet)
        ts.append(int(t))
        keys.append(bool(packet.is_keyframe))
    if not packets:
        return None
    pos_of_ts = {t: i for i, t in enumerate(ts)}
    if len(pos_of_ts) != len(ts):  # duplicate timestamps: cannot identify frames by timestamp
        return None
    last_key, k = [], 0
    for i, is_key in enumerate(keys):
        if is_key:
            k = i
        last_key.append(k)
    # A stream that reorders frames yet whose timestamps only grow in decode order carries decode
    # times, not presentation times (H.264 with B-frames in AVI): its frames are found by counting.
    reorders = bool(stream.codec_context.has_b_frames)
    by_timestamp = not (reorders and all(a < b for a, b in zip(ts, ts[1:], strict=False)))
    return _Index(packets, ts, sorted(ts), pos_of_ts, last_key, by_timestamp)


def _runs(idx: _Index, wanted_pos: list[int]) -> list[tuple[int, int]]:
    """Decode-order packet ranges [start, end] covering every wanted position from its keyframe."""
    runs: list[list[int]] = []
    for d in sorted(set(wanted_pos)):
        k = idx.last_key[d]
        # a frame shown before its keyframe (open GOP leading picture) needs the previous group
        while k > 0 and idx.ts[d] < idx.ts[k]:
            k = idx.last_key[k - 1]
        if runs and k <= runs[-1][1] + 1:
            runs[-1][1] = max(runs[-1][1], d)
        else:
            runs.append([k, d])
    return [(a, b) for a, b in runs]


def _decode_indexed(idx: _Index, stream, wanted: list[int]) -> dict[int, np.ndarray] | None:
    want_ts = {idx.pres_ts[i]: i for i in wanted}
    wanted_pos = [idx.pos_of_ts[t] for t in want_ts]
    cc = stream.codec_context
    # frame threading would delay the skip_frame switches below; slice threading is fine
    cc.thread_type = "SLICE"
    reformatter = VideoReformatter()
    out: dict[int, np.ndarray] = {}

    def take(frames):
        for frame in frames:
            i = want_ts.get(frame.pts)
            if i is not None and i not in out:
                out[i] = _to_rgb(frame, reformatter)

    started = False
    for start, end in _runs(idx, wanted_pos):
        if started:
            take(cc.decode(None))
            cc.flush_buffers()
        started = True
        for p in range(start, end + 1):
            cc.skip_frame = "DEFAULT" if idx.ts[p] in want_ts else "NONREF"
            take(cc.decode(idx.packets[p]))
    if started:
        cc.skip_frame = "DEFAULT"
        take(cc.decode(None))
    return out if len(out) == len(want_ts) else None


def _decode_sequential(container, stream, wanted: list[int]) -> dict[int, np.ndarray]:
    container.seek(0)
    stream.codec_context.flush_buffers()
    stream.codec_context.skip_frame = "DEFAULT"
    reformatter = VideoReformatter()
    want = set(wanted)
    last = max(want)
    out: dict[int, np.ndarray] = {}
    frame = None
    i = -1
    for i, frame in enumerate(container.decode(stream)):
        if i in want:
            out[i] = _to_rgb(frame, reformatter)
        if i >= last:
            break
    if frame is None:
        raise VideoDecodeError("no frame could be decoded")
    if len(out) < len(want):  # the stream had fewer frames than announced: repeat the last one
        fill = out[max(out)] if out else _to_rgb(frame, reformatter)
        for j in want - out.keys():
            out[j] = fill
    return out


def probe(path: Source) -> VideoInfo:
    """Frame count (exact, from the demuxed packets), size and frame rate, without decoding."""
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        try:
            idx = _index(container, stream)
        except av.error.FFmpegError as e:
            raise VideoDecodeError(f"cannot read {path}: {e}") from e
        n = len(idx.pres_ts) if idx else int(stream.frames or 0)
        rate = stream.average_rate or stream.guessed_rate or 0
        cc = stream.codec_context
        return VideoInfo(num_frames=n, width=cc.width, height=cc.height, fps=float(rate))
    finally:
        container.close()


def _same_size(frames: dict[int, np.ndarray], first: int) -> dict[int, np.ndarray]:
    """Resolution change mid-stream: bring every frame to the size of frame ``first``."""
    h, w = frames[first].shape[:2]
    for k, f in frames.items():
        if f.shape[:2] != (h, w):
            t = torch.from_numpy(f).permute(2, 0, 1)[None].float()
            t = torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
            frames[k] = t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    return frames


def read_frames(
    container: av.container.InputContainer, indices: Sequence[int] | IndexSampler, path: str
) -> tuple[np.ndarray, int]:
    """The frames ``indices`` at the decoded size (``uint8 [K, H, W, 3]``) and the frame count, by the
    sparse reader on an open container (closed here; ``path`` names the video in errors)."""
    try:
        stream = container.streams.video[0]
        try:
            idx = _index(container, stream)
            if idx is not None:
                n = len(idx.pres_ts)
            else:
                n = int(stream.frames or 0)
                if n <= 0:
                    container.seek(0)
                    n = sum(1 for _ in container.demux(stream))
            if n <= 0:
                raise VideoDecodeError("the video stream has no frames")
            wanted_list = clamp_indices(indices, n)
            if not wanted_list:
                return np.zeros((0, stream.codec_context.height, stream.codec_context.width, 3), np.uint8), n
            wanted = sorted(set(wanted_list))
            frames = None
            if idx is not None and idx.by_timestamp:
                try:
                    frames = _decode_indexed(idx, stream, wanted)
                except av.error.FFmpegError:
                    frames = None
            if frames is None:
                frames = _decode_sequential(container, stream, wanted)
        except (av.error.FFmpegError, ValueError, VideoDecodeError) as e:
            raise VideoDecodeError(f"cannot decode {path}: {e}") from e
        if len({f.shape for f in frames.values()}) > 1:
            frames = _same_size(frames, wanted[0])
        first = frames[wanted[0]]
        out = np.empty((len(wanted_list), *first.shape), np.uint8)
        for k, i in enumerate(wanted_list):
            out[k] = frames[i]
        return out, n
    finally:
        container.close()


def read_all_frames(path: Source) -> np.ndarray:
    """The plain approach, as a reference: decode every frame to RGB, in presentation order."""
    container = open_video(path)
    reformatter = VideoReformatter()
    try:
        frames = [_to_rgb(f, reformatter) for f in container.decode(container.streams.video[0])]
    finally:
        container.close()
    if not frames:
        raise VideoDecodeError(f"no frame could be decoded from {path}")
    return np.stack(frames)


def has_b_frames(container: av.container.InputContainer) -> bool:
    """Whether the video stream reorders frames (B-frames): then PyAV's non-reference skipping wins."""
    return bool(container.streams.video[0].codec_context.has_b_frames)


def describe() -> str:
    """``pyav <version>``, for logs."""
    return f"pyav {av.__version__}"
