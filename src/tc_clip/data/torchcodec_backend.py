"""Deprecated: moved to :mod:`tc_clip.data.decoding` (the choice, :data:`~tc_clip.data.decoding.CHOICES`)
and :mod:`tc_clip.data.decoding.torchcodec` (the backend). Kept for one release; importing it warns."""

from tc_clip._deprecation import warn_moved
from tc_clip.data.decoding import CHOICES as BACKENDS
from tc_clip.data.decoding import Backend, describe_backend, resolve_backend
from tc_clip.data.decoding.torchcodec import read_frames, torchcodec_status

__all__ = ["BACKENDS", "Backend", "resolve_backend", "describe_backend", "torchcodec_status", "read_frames"]

warn_moved("tc_clip.data.torchcodec_backend", "tc_clip.data.decoding and tc_clip.data.decoding.torchcodec")
