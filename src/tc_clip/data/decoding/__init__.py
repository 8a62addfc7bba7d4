"""Decoding only the frames a clip needs, with the backend that reads each video fastest.

Two backends side by side: :mod:`~tc_clip.data.decoding.pyav` (a sparse reader that skips
non-reference frames; always works) and :mod:`~tc_clip.data.decoding.torchcodec` (seek-and-decode in
C++; where it imports and works). This dispatcher holds the one list of them (:data:`DECODERS`) and the
choice: ``backend="auto"`` picks per stream, PyAV where the stream has B-frames (its non-reference
skipping decodes fewer frames than torchcodec's seek-and-decode), torchcodec elsewhere, and PyAV again
for a file torchcodec cannot read. A file is probed for B-frames with the PyAV container that then
decodes it (0.2 ms to open); once a folder's files with one extension were found without B-frames, its
new files go straight to torchcodec (no probe), so a first pass over a dataset opens each file once.
AVI is the exception: it stores decode times only, and torchcodec returns the frames of an AVI file
with B-frames (Xvid, DivX, H.264) out of order, so every AVI file is probed, and ``decoder: torchcodec``
refuses an AVI file with B-frames (:class:`DecoderMismatchError`).
Both convert to RGB with the same swscale conversion and give the
frames of a full decode pixel for pixel, and frames are brought to ``short_side`` by one shared resize
(:func:`shrink_short_side`, the training transform's own), so the pixels never depend on which
backend read a file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal, get_args

import av
import numpy as np

from tc_clip._deprecation import warn_moved
from tc_clip.data.decoding import pyav, torchcodec
from tc_clip.data.decoding.base import (
    DecodedClip,
    DecoderMismatchError,
    IndexSampler,
    Source,
    VideoDecodeError,
    VideoInfo,
    check_exists,
    shrink_short_side,
    source_name,
)
from tc_clip.data.decoding.pyav import probe, read_all_frames
from tc_clip.data.decoding.torchcodec import torchcodec_status

__all__ = [
    "CHOICES",
    "DECODERS",
    "Backend",
    "DecodedClip",
    "DecoderMismatchError",
    "VideoDecodeError",
    "VideoInfo",
    "decode",
    "describe_backend",
    "probe",
    "read_all_frames",
    "read_frames",
    "resolve_backend",
    "shrink_short_side",
    "torchcodec_status",
]

#: what a ``decoder`` option accepts: ``auto``, or one of the backends
Backend = Literal["auto", "pyav", "torchcodec"]
CHOICES: tuple[str, ...] = get_args(Backend)
#: the decoder backends; an item's ``decoder`` code is a position in this list
DECODERS: tuple[str, ...] = CHOICES[1:]


def resolve_backend(backend: str = "auto") -> str:
    """What ``backend`` means here: ``"pyav"``, ``"torchcodec"``, or ``"auto"`` (the per-stream choice
    of :func:`decode`), which is ``"pyav"`` where torchcodec does not work. The environment variable
    ``TC_CLIP_DECODER`` overrides ``"auto"``. Forcing torchcodec where it does not work is an error."""
    if backend == "auto":
        backend = os.environ.get("TC_CLIP_DECODER", "auto") or "auto"
        if backend not in CHOICES:
            raise ValueError(f"TC_CLIP_DECODER={backend!r}: expected one of {CHOICES}")
        if backend == "auto":
            return "auto" if torchcodec.torchcodec_status()[0] else "pyav"
    if backend == "pyav":
        return backend
    if backend != "torchcodec":
        raise ValueError(f"decoder {backend!r}: expected one of {CHOICES}")
    ok, why = torchcodec.torchcodec_status()
    if not ok:
        raise RuntimeError(f"decoder 'torchcodec' was asked for but {why}; use 'pyav' or 'auto'")
    return backend


def describe_backend(backend: str = "auto") -> str:
    """Which decoder ``backend`` runs, with versions (for logs and benchmarks)."""
    chosen = resolve_backend(backend)
    if chosen == "torchcodec":
        return torchcodec.torchcodec_status()[1]
    if chosen == "auto":
        return (f"{pyav.describe()} for streams with B-frames, "
                f"{torchcodec.torchcodec_status()[1]} for the others")
    return pyav.describe()


#: ``auto``'s choice per file (or per ``name`` of a video's bytes), remembered per process: True for
#: PyAV. The choice changes speed, never pixels. At most ``_AUTO_REMEMBERED`` files (a few MB per worker).
_auto_pyav: dict[str, bool] = {}
_AUTO_REMEMBERED = 1 << 16
#: the choice of the last probed file of each family (folder and extension): a dataset's files share
#: their encoder settings, and in an epoch each file is new to a worker, so ``auto`` decides per family
_auto_family: dict[tuple[str, str], bool] = {}


def _family(key: str | None) -> tuple[str, str] | None:
    return (os.path.dirname(key), os.path.splitext(key)[1].lower()) if key else None


def _auto_wants_pyav(
    source: Source, key: str | None, name: str | None
) -> tuple[bool, av.container.InputContainer | None]:
    """``auto``'s choice for this video, and the PyAV container opened to make it (None if none was opened).

    A file seen before keeps its own choice. A new file of a family whose last probed file had no
    B-frames goes to torchcodec without a PyAV probe (so a first pass opens each such file once), unless
    the family is AVI, where a B-frame file read by torchcodec would come out in the wrong order;
    otherwise the PyAV container that decodes a B-frame stream is the probe, which costs no extra open.
    """
    if key is not None and key in _auto_pyav:
        return _auto_pyav[key], None
    family = _family(key)
    if family is not None and _auto_family.get(family) is False:
        return False, None
    container = pyav.open_video(source, name)
    wants = pyav.has_b_frames(container)
    _remember(key, wants)
    if family is not None and (family in _auto_family or len(_auto_family) < _AUTO_REMEMBERED):
        _auto_family[family] = wants or container.format.name == "avi"  # True: probe the next file too
    return wants, container


#: AVI files checked for B-frames before a forced torchcodec read: path (or name) -> misread
_torchcodec_misreads: dict[str, bool] = {}


def _check_torchcodec_reads(source: Source, key: str | None, name: str | None) -> None:
    """Refuse an AVI file with B-frames for torchcodec, which would return its frames out of order
    (AVI stores decode times only). Other containers carry presentation times; only AVI is opened."""
    label = key or ""
    if label and not label.lower().endswith(".avi"):
        return
    if key is not None and key in _torchcodec_misreads:
        misread = _torchcodec_misreads[key]
    else:
        container = pyav.open_video(source, name)
        try:
            misread = container.format.name == "avi" and pyav.has_b_frames(container)
        finally:
            container.close()
        if key is not None and len(_torchcodec_misreads) < _AUTO_REMEMBERED:
            _torchcodec_misreads[key] = misread
    if misread:
        raise DecoderMismatchError(
            f"decoder 'torchcodec' would read {source_name(source, name)} wrongly: it is an AVI file with "
            "B-frames, whose frames torchcodec returns out of order; use decoder 'auto' (the default) or 'pyav'"
        )


def _remember(key: str | None, wants_pyav: bool) -> None:
    if key is not None and (key in _auto_pyav or len(_auto_pyav) < _AUTO_REMEMBERED):
        _auto_pyav[key] = wants_pyav


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
    ``"torchcodec"`` or ``"auto"`` (module docstring). Every backend returns the frames of a full
    decode, pixel for pixel. Returns the frames ``uint8 [len(indices), H, W, 3]``, the frame count and
    the backend that read them (:class:`DecodedClip`).
    Raises :class:`FileNotFoundError` or :class:`VideoDecodeError`.
    """
    check_exists(source)
    frames, n, used = _read(source, indices, resolve_backend(backend), name)
    return DecodedClip(shrink_short_side(frames, short_side), n, used)


def _read(
    source: Source, indices: Sequence[int] | IndexSampler, chosen: str, name: str | None
) -> tuple[np.ndarray, int, str]:
    """The frames at the decoded size, the frame count and the backend that read them."""
    key = (name or None) if isinstance(source, bytes) else os.fspath(source)
    if chosen == "torchcodec":
        _check_torchcodec_reads(source, key, name)
        try:
            return (*torchcodec.read_frames(source, indices), "torchcodec")
        except Exception as e:  # torchcodec raises RuntimeError/ValueError for unreadable input
            raise VideoDecodeError(f"cannot decode {source_name(source, name)} with torchcodec: {e}") from e
    container = None
    if chosen == "auto":
        wants_pyav, container = _auto_wants_pyav(source, key, name)
        if not wants_pyav:
            if container is not None:
                container.close()
                container = None
            try:
                return (*torchcodec.read_frames(source, indices), "torchcodec")
            except Exception:  # a file torchcodec cannot read: PyAV from now on, which says why if it fails
                _remember(key, True)
    if container is None:
        container = pyav.open_video(source, name)
    return (*pyav.read_frames(container, indices, source_name(source, name)), "pyav")


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


def __getattr__(name: str) -> object:
    """``BACKENDS``, the old name of :data:`CHOICES`: warns (one release)."""
    if name == "BACKENDS":
        warn_moved(f"{__name__}.BACKENDS", f"{__name__}.CHOICES")
        return CHOICES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
