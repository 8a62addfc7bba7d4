"""Decoding only the frames a clip needs: torchcodec where it works (see
:mod:`tc_clip.data.torchcodec_backend`), else PyAV, whose reader is described here.

:func:`read_frames` first demuxes the whole video stream (cheap: no decoding), which gives the exact
number of frames and, for every frame in presentation order, its packet and the keyframe it depends on.
It then decodes, for every wanted frame, only the packets from the keyframe before it up to the frame
itself (consecutive wanted frames in one group of pictures share one run), lets the decoder drop
non-reference frames that are not wanted (``skip_frame=NONREF``) and converts only the wanted frames to
RGB. Frames are identified by presentation timestamp, so B-frame reordering and variable frame rate
are handled: frame ``i`` is the ``i``-th frame in presentation order, whatever its timestamp.

``backend="auto"`` picks per stream: PyAV where the stream has B-frames (its non-reference skipping
decodes fewer frames than torchcodec's seek-and-decode), torchcodec elsewhere. Both convert to RGB with
the same swscale conversion and give the frames of a full decode pixel for pixel, and frames are brought
to ``short_side`` by one shared resize (:func:`shrink_short_side`, the training transform's own), so the
pixels never depend on which backend read a file.

If anything about a file does not fit this plan (packets without timestamps, a wanted frame that the
decoder never returned, ...) the reader falls back to decoding the stream sequentially, still converting
only the wanted frames. Rotation metadata is applied, grayscale and odd-sized videos come out as RGB.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from torchvision.transforms.v2 import functional as TF

from tc_clip.data import torchcodec_backend
from tc_clip.data.torchcodec_backend import BACKENDS, Backend, resolve_backend

__all__ = [
    "BACKENDS",
    "Backend",
    "VideoDecodeError",
    "VideoInfo",
    "probe",
    "read_frames",
    "read_all_frames",
    "resolve_backend",
    "shrink_short_side",
    "DecodedClip",
    "decode",
]

IndexSampler = Callable[[int], Sequence[int]]
#: a video file, or the bytes of one (as stored in shards)
Source = str | os.PathLike | bytes


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded."""


@dataclass
class DecodedClip:
    """What :func:`decode` read: the frames, the video's frame count and the backend that read them."""

    frames: np.ndarray  # uint8 [K, H, W, 3]
    num_frames: int
    backend: str  # "pyav" or "torchcodec"


@dataclass
class VideoInfo:
    num_frames: int
    width: int
    height: int
    fps: float
    rotation: int = 0


def _name(source: Source, name: str | None = None) -> str:
    return name or (f"<{len(source)} bytes>" if isinstance(source, bytes) else str(source))


def _check_exists(source: Source) -> None:
    if not isinstance(source, bytes) and not os.path.exists(source):
        raise FileNotFoundError(f"video not found: {source}")


def _open(path: Source, name: str | None = None) -> av.container.InputContainer:
    _check_exists(path)
    try:
        src = io.BytesIO(path) if isinstance(path, bytes) else str(path)
        container = av.open(src, metadata_errors="ignore")
    except Exception as e:  # av.error.* and OSError
        raise VideoDecodeError(f"cannot open video {_name(path, name)}: {e}") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"no video stream in {_name(path, name)}")
    return container


def shrink_short_side(frames: np.ndarray, short_side: int | None) -> np.ndarray:
    """``uint8 [K, H, W, 3]`` with the short side brought down to ``short_side`` (never up), by the
    antialiased bilinear resize of the training transform (torchvision's ``resize(clip, [short_side])``),
    so that a clip resized here equals one resized there."""
    if not short_side or min(frames.shape[1:3]) <= short_side:
        return frames
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)  # channels-last: torch's fast uint8 path
    return TF.resize(clip, [short_side], antialias=True).permute(0, 2, 3, 1).numpy()


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
    return _Index(packets, ts, sorted(ts), pos_of_ts, last_key)


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


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count (exact, from the demuxed packets), size and frame rate, without decoding."""
    container = _open(path)
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


def _read_pyav(
    container: av.container.InputContainer, indices: Sequence[int] | IndexSampler, path: str
) -> tuple[np.ndarray, int]:
    """The sparse PyAV reader on an open container (closed here)."""
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
            wanted_list = [min(max(int(i), 0), n - 1) for i in (indices(n) if callable(indices) else indices)]
            if not wanted_list:
                return np.zeros((0, stream.codec_context.height, stream.codec_context.width, 3), np.uint8), n
            wanted = sorted(set(wanted_list))
            frames = None
            if idx is not None:
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
    container = _open(path)
    reformatter = VideoReformatter()
    try:
        frames = [_to_rgb(f, reformatter) for f in container.decode(container.streams.video[0])]
    finally:
        container.close()
    if not frames:
        raise VideoDecodeError(f"no frame could be decoded from {path}")
    return np.stack(frames)


def _has_b_frames(container: av.container.InputContainer) -> bool:
    """Whether the video stream reorders frames (B-frames): then PyAV's non-reference skipping wins."""
    return bool(container.streams.video[0].codec_context.has_b_frames)


#: ``auto``'s choice per file (or per ``name`` of a video's bytes), remembered per process: True for
#: PyAV. The choice changes speed, never pixels. At most ``_AUTO_REMEMBERED`` files (a few MB per worker);
#: past that, a file without B-frames costs one more container open per read.
_auto_pyav: dict[str, bool] = {}
_AUTO_REMEMBERED = 1 << 16


def _auto_wants_pyav(
    source: Source, key: str | None, name: str | None
) -> tuple[bool, av.container.InputContainer | None]:
    """``auto``'s choice for this video, and the PyAV container opened to make it (None if remembered)."""
    if key is not None and key in _auto_pyav:
        return _auto_pyav[key], None
    container = _open(source, name)
    pyav = _has_b_frames(container)
    _remember(key, pyav)
    return pyav, container


def _remember(key: str | None, pyav: bool) -> None:
    if key is not None and (key in _auto_pyav or len(_auto_pyav) < _AUTO_REMEMBERED):
        _auto_pyav[key] = pyav


def decode(
    source: Source,
    indices: Sequence[int] | IndexSampler,
    short_side: int | None = None,
    backend: Backend = "auto",
    name: str | None = None,
) -> DecodedClip:
    """Decode the frames ``indices`` (presentation order, may repeat, any order) of a video file or of
    its bytes; ``name`` names it in errors (default: the path).

    ``indices`` may be a function of the number of frames that returns the indices (TSN sampling needs
    the frame count first). Indices past the end are clamped to the last frame. ``short_side`` resizes
    frames whose short side is larger down to it (:func:`shrink_short_side`). ``backend``: ``"pyav"``,
    ``"torchcodec"`` or ``"auto"`` (where torchcodec works: PyAV for streams with B-frames, torchcodec
    for the others, and PyAV again for a file torchcodec cannot read; else PyAV). Every backend returns
    the frames of a full decode, pixel for pixel. Returns the frames ``uint8 [len(indices), H, W, 3]``,
    the frame count and the backend that read them (:class:`DecodedClip`).
    Raises :class:`FileNotFoundError` or :class:`VideoDecodeError`.
    """
    _check_exists(source)
    frames, n, used = _read(source, indices, resolve_backend(backend), name)
    return DecodedClip(shrink_short_side(frames, short_side), n, used)


def _read(
    source: Source, indices: Sequence[int] | IndexSampler, chosen: str, name: str | None
) -> tuple[np.ndarray, int, str]:
    """The frames at the decoded size, the frame count and the backend that read them."""
    if chosen == "torchcodec":
        try:
            return (*torchcodec_backend.read_frames(source, indices), "torchcodec")
        except Exception as e:  # torchcodec raises RuntimeError/ValueError for unreadable input
            raise VideoDecodeError(f"cannot decode {_name(source, name)} with torchcodec: {e}") from e
    container = None
    if chosen == "auto":
        key = (name or None) if isinstance(source, bytes) else os.fspath(source)
        pyav, container = _auto_wants_pyav(source, key, name)
        if not pyav:
            if container is not None:
                container.close()
                container = None
            try:
                return (*torchcodec_backend.read_frames(source, indices), "torchcodec")
            except Exception:  # a file torchcodec cannot read: PyAV from now on, which says why if it fails
                _remember(key, True)
    return (*_read_pyav(container if container is not None else _open(source, name), indices, _name(source, name)),
            "pyav")


def read_frames(
    source: Source,
    indices: Sequence[int] | IndexSampler,
    short_side: int | None = None,
    backend: Backend = "auto",
    name: str | None = None,
) -> tuple[np.ndarray, int]:
    """:func:`decode` as ``(frames, num_frames)``."""
    clip = decode(source, indices, short_side, backend, name)
    return clip.frames, clip.num_frames
