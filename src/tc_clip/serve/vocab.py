"""Text states per vocabulary, kept in a bounded LRU so a large default vocabulary is encoded once.

A :class:`~tc_clip.model.TCCLIP` caches the video-independent text states of its current vocabulary
(the class prompts through the text layers before the first VP layer, or all of them without VP). This
cache keeps that state, with the prompt tokens it belongs to, for the last ``capacity`` vocabularies and
puts it back when a vocabulary comes again, so switching between vocabularies costs no text encoding.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tc_clip.model.tcclip import TCCLIP

__all__ = ["VocabularyCache"]

Key = tuple[str, ...]


class VocabularyCache:
    """Switch ``model``'s vocabulary, reusing the text states of the ``capacity`` most recent ones."""

    def __init__(self, model: TCCLIP, capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError(f"the vocabulary cache needs capacity >= 1, got {capacity}")
        self.model = model
        self.capacity = capacity
        self._entries: OrderedDict[Key, tuple[Any, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, names: Sequence[str]) -> bool:
        return tuple(names) in self._entries

    def _remember(self) -> None:
        """Keep the model's current vocabulary (its tokens and whatever text states it has computed)."""
        key = tuple(self.model.class_names)
        if not key:
            return
        self._entries[key] = (self.model.prompt_tokens, self.model._cache)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def use(self, names: Sequence[str]) -> None:
        """Make ``names`` the model's vocabulary (raises ``ValueError`` for names the model refuses)."""
        key = tuple(str(n) for n in names)
        if key == tuple(self.model.class_names):
            self.hits += 1
            self._remember()
            return
        self._remember()
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            self.model.set_class_names(list(key))
        else:
            self.hits += 1
            self._entries.move_to_end(key)
            # the model's text-state cache is keyed by these very token tensors: it stays valid
            self.model._class_names, self.model.prompt_tokens, self.model._cache = list(key), entry[0], entry[1]

    def done(self) -> None:
        """Call after a forward pass: keeps the text states it computed for the current vocabulary."""
        self._remember()
