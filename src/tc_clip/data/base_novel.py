"""The published base-to-novel class split of each benchmark (package data ``base_to_novel_classes.json``).

The paper's base-to-novel numbers train on fixed base classes and test on the rest; the split is not the
first half of the ids (HMDB-51 base = ids 25-50; UCF-101, K-400 and SSv2 scattered). ``base`` and
``novel`` list the classes in the order of the split's own labels: position i is label i in the public
``fs_base_s*_train.txt`` / ``base_val.txt`` / ``novel_val.txt`` lists.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["PublishedSplit", "name_key", "published_split", "published_base_ids"]

# data-module dataset names -> keys of the JSON file
_KEYS = {"hmdb51": "hmdb51", "ucf101": "ucf101", "k400": "kinetics400", "kinetics400": "kinetics400", "ssv2": "ssv2"}


@dataclass(frozen=True)
class PublishedSplit:
    benchmark: str
    num_classes: int
    base: tuple[str, ...]
    base_ids: tuple[int, ...]
    novel: tuple[str, ...]
    novel_ids: tuple[int, ...]


@cache
def _table() -> dict:
    text = resources.files("tc_clip.data").joinpath("base_to_novel_classes.json").read_text(encoding="utf-8")
    return json.loads(text)["datasets"]


def published_split(benchmark: str) -> PublishedSplit | None:
    """The published split of ``benchmark`` (``hmdb51``, ``ucf101``, ``k400``, ``ssv2``), else None."""
    key = _KEYS.get(benchmark)
    if key is None:
        return None
    d = _table()[key]
    return PublishedSplit(
        benchmark,
        d["num_classes"],
        tuple(d["base"]),
        tuple(d["base_ids"]),
        tuple(d["novel"]),
        tuple(d["novel_ids"]),
    )


def name_key(name: str) -> str:
    """A class name without case, spaces and punctuation: ``brush_hair`` = ``brush hair``."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def published_base_ids(benchmark: str, class_names: Sequence[str], where: str) -> list[int]:
    """Ids (into ``class_names``) of the published base classes of ``benchmark``, in the split's order.

    Classes are matched by name, ignoring case, spaces and punctuation (``brush_hair`` = ``brush hair``);
    when the names differ but the class count is the benchmark's, the published ids are used with a
    warning. Anything else is an error naming ``where``."""
    split = published_split(benchmark)
    if split is None:
        raise ValueError(
            f"{where}: no published base/novel split for {benchmark!r}; set base_classes (names or a file)"
        )
    lookup = {name_key(n): i for i, n in enumerate(class_names)}
    missing = [n for n in split.base + split.novel if name_key(n) not in lookup]
    if not missing:
        return [lookup[name_key(n)] for n in split.base]
    if len(class_names) == split.num_classes:
        warnings.warn(
            f"{where}: {len(missing)} class names of the published {benchmark} base/novel split are not in "
            f"the class list (first: {missing[0]!r}); using the published class ids",
            stacklevel=2,
        )
        return list(split.base_ids)
    raise ValueError(
        f"{where}: the class list ({len(class_names)} classes) is not {benchmark}'s ({split.num_classes}) "
        f"and lacks the published base/novel classes {missing[:5]}; set base_classes"
    )
