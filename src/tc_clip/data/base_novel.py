"""Deprecated: the published base/novel split moved to :mod:`tc_clip.data.protocols`. Kept for one
release; importing it warns."""

from tc_clip._deprecation import warn_moved
from tc_clip.data.protocols import PublishedSplit, name_key, published_base_ids, published_split

__all__ = ["PublishedSplit", "name_key", "published_split", "published_base_ids"]

warn_moved("tc_clip.data.base_novel", "tc_clip.data.protocols")
