"""The paper's evaluation protocols as plain functions of resolved splits (SPEC 5b).

A data module reads its lists into :class:`~tc_clip.data.splits.SplitData` and calls these to turn them
into an experiment, so the rules live in one place whatever the dataset's layout:

- few-shot training data: a public K-shot list used as it is (:func:`few_shot_split`), or ``shot``
  videos per class drawn with a seed and written out (:func:`draw_shots`);
- base-to-novel: the published base/novel class split of each benchmark (package data
  ``base_to_novel_classes.json``; the split is not the first half of the ids: HMDB-51 base = ids 25-50,
  UCF-101, K-400 and SSv2 scattered), every evaluation list split into its base and novel classes
  (:func:`split_base_novel`), or the public ``base_val`` / ``novel_val`` lists paired as they are
  (:func:`pair_base_novel`);
- evaluation-set names and groups (:func:`name_sets`), renamed by ``eval_names`` and checked to be
  unique (:func:`rename_sets`, the one such check of the data layer).
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TypeVar

from tc_clip.data import annotations as ann
from tc_clip.data.splits import PROTOCOLS, SplitData, TrainInfo

__all__ = [
    "PublishedSplit",
    "base_ids",
    "check_options",
    "class_ids",
    "default_shot",
    "draw_shots",
    "few_shot_split",
    "name_key",
    "name_sets",
    "pair_base_novel",
    "planned_train_info",
    "published_base_ids",
    "published_split",
    "rename_sets",
    "split_base_novel",
]

log = logging.getLogger(__name__)

_SEED_IN_NAME = re.compile(r"(?:^|[_\-.])s(?:eed)?_?(\d+)(?=[_\-.]|$)")
#: protocols that train on K videos per class
FEW_SHOT = ("few_shot", "base_to_novel")
#: data-module dataset names -> keys of the published-split file
_KEYS = {"hmdb51": "hmdb51", "ucf101": "ucf101", "k400": "kinetics400", "kinetics400": "kinetics400", "ssv2": "ssv2"}

Named = TypeVar("Named")


def check_options(protocol: str, *, shot: int | None, base_classes: object, novel_list: object) -> None:
    """A known ``protocol``, and no option given that only another protocol uses."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    only = {
        "shot": (shot is not None, FEW_SHOT),
        "base_classes": (bool(base_classes), ("base_to_novel",)),
        "novel_list": (bool(novel_list), ("base_to_novel",)),
    }
    for name, (given, allowed) in only.items():
        if given and protocol not in allowed:
            raise ValueError(f"{name} is used by protocol {' / '.join(allowed)} only, not {protocol!r}")


# --- the published base/novel split -----------------------------------------------------------------


@dataclass(frozen=True)
class PublishedSplit:
    """A benchmark's published base/novel classes; position i of ``base`` / ``novel`` is label i in the
    public ``fs_base_s*_train.txt`` / ``base_val.txt`` / ``novel_val.txt`` lists."""

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
        benchmark, d["num_classes"], tuple(d["base"]), tuple(d["base_ids"]), tuple(d["novel"]), tuple(d["novel_ids"])
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


# --- classes ---------------------------------------------------------------------------------------


def class_ids(split: SplitData, spec: str | list[str], what: str) -> list[int]:
    """Ids into ``split``'s classes of the names ``spec`` (names, or a file of them) lists, in its order."""
    wanted = ann.read_class_list(spec) or []
    lookup = {n: i for i, n in enumerate(split.class_names)}
    missing = [n for n in wanted if n not in lookup]
    if missing:
        src = spec if isinstance(spec, str) else what
        raise ValueError(f"{src}: {what} names not in the class list of '{split.name}': {missing[:10]}")
    return [lookup[n] for n in wanted]


def base_ids(split: SplitData, base_classes: str | list[str] | None, benchmark: str | None, owner: str) -> list[int]:
    """The base classes of ``split``: ``base_classes`` when given, else the benchmark's published ones."""
    if base_classes:
        return class_ids(split, base_classes, "base_classes")
    return published_base_ids(benchmark or "", split.class_names, f"{owner} '{split.name}'")


# --- few-shot training data ------------------------------------------------------------------------


def default_shot(protocol: str, shot: int | None) -> int | None:
    """K of a drawn training list: ``shot``, else 16 for base-to-novel (the paper's), else none."""
    return shot or (16 if protocol == "base_to_novel" else None)


def draw_shots(
    split: SplitData,
    shot: int,
    seed: int,
    *,
    source: str,
    dataset_name: str,
    out_dir: Path,
    list_root: str | None,
    owner: str,
) -> tuple[SplitData, TrainInfo]:
    """``shot`` videos per class drawn with ``seed``: a different experiment from the paper's public
    lists, so it is logged as one, and the list is written to ``out_dir`` so that the run can be repeated."""
    samples = ann.sample_few_shot(split.samples, shot, seed, split.class_names, source)
    stem = split.name if split.name.startswith(dataset_name) else f"{dataset_name}_{split.name}"
    out = out_dir / f"{stem}_{shot}shot_seed{seed}.txt"
    written: str | None = str(out)
    try:
        ann.write_list_file(samples, out, list_root)  # absolute paths without a root
    except (OSError, ValueError) as e:
        warnings.warn(f"could not write the drawn few-shot list to {out}: {e}", stacklevel=2)
        written = None
    log.warning(
        "%s: drew %d videos per class with seed %d from %s (%d videos, written to %s). A seed-drawn list "
        "is a different experiment from the paper's, which uses the public K-shot list files: pass one "
        "as train_list to reproduce it.",
        owner, shot, seed, source, len(samples), written,
    )
    return replace(split, samples=samples), TrainInfo("seed_drawn", shot, seed, written)


def few_shot_split(
    split: SplitData,
    *,
    protocol: str,
    shot: int | None,
    train_list: str | None,
    from_file: bool,
    draw: Callable[[SplitData, int], tuple[SplitData, TrainInfo]],
    owner: str,
) -> tuple[SplitData, TrainInfo]:
    """Few-shot training data: a list file as it is (K = its per-class count), or drawn by ``draw``
    (the dataset's own split, or fewer than the list holds per class)."""
    counts = ann.shots_per_class(split.samples)
    if not counts:
        raise ValueError(f"{train_list or owner}: the training split is empty")
    if not from_file:
        k = default_shot(protocol, shot)
        if k is None:
            raise ValueError(
                f"{owner}: protocol 'few_shot' needs the public K-shot list as train_list "
                "(the paper's experiment), or shot=K (--data.shot) to draw K videos per class with seed"
            )
        return draw(split, k)
    least, most = min(counts.values()), max(counts.values())
    if shot is not None and not shot == least == most:
        return draw(split, shot)  # more than the list holds: sample_few_shot's error
    absent = len(split.class_names) - len(counts)
    if least != most or absent:
        warnings.warn(
            f"{train_list}: the few-shot list holds {least}-{most} videos per class"
            + (f" and none of {absent} classes" if absent else "")
            + f"; reporting shot={least}",
            stacklevel=2,
        )
    match = _SEED_IN_NAME.search(Path(str(train_list)).stem)
    return split, TrainInfo("list_file", least, int(match.group(1)) if match else None, str(train_list))


def planned_train_info(protocol: str, shot: int | None, seed: int, train_list: str | None) -> TrainInfo:
    """What the configuration says of the training data before it is read (for ``describe()``)."""
    drawn = protocol in FEW_SHOT and not train_list
    k = default_shot(protocol, shot) if drawn else shot
    source = "seed_drawn" if drawn else ("list_file" if train_list else "dataset")
    return TrainInfo(source, k, seed if drawn else None, train_list)


# --- base-to-novel evaluation sets -----------------------------------------------------------------


def split_base_novel(splits: list[SplitData], base_of: Callable[[SplitData], list[int]]) -> list[SplitData]:
    """Every evaluation list split into its base classes (``base_of``) and the rest, in that order."""
    out = []
    for s in splits:
        base = base_of(s)
        novel = [i for i in range(len(s.class_names)) if i not in set(base)]
        out.append(s.subset(base, s.name, "base"))
        out.append(s.subset(novel, s.name, "novel"))
    return out


def pair_base_novel(
    splits: list[SplitData], read_novel: Callable[[], SplitData], base_classes: object, stage: str
) -> list[SplitData]:
    """The public lists as they are: the one evaluation list (``base_val.txt``, base labels) and the
    novel list (``novel_val.txt``, read by ``read_novel``), with roles base and novel."""
    if base_classes:
        raise ValueError("base_classes and novel_list exclude each other: with the public base/novel "
                         "lists the label files already say which classes are base and novel")
    if len(splits) != 1:
        raise ValueError(f"novel_list: base-to-novel with the public lists needs exactly one {stage} "
                         f"list (base_val.txt), got {len(splits)}")
    novel = read_novel()
    base = splits[0]
    base.role, novel.role = "base", "novel"
    return [base, novel]


# --- evaluation-set names ---------------------------------------------------------------------------


def name_sets(
    splits: list[SplitData],
    *,
    benchmark: str | None,
    group: str | None,
    numbered: bool,
    split_number: int,
    zero_shot: bool,
    public_novel: bool,
) -> list[SplitData]:
    """Clean names and groups, in place. With a ``benchmark``: ``<benchmark>/split<k>`` for ``numbered``
    splits (HMDB-51, UCF-101, K-600), ``<benchmark>/val`` for a single other set, ``<benchmark>/<base|novel>``;
    without: the list's own name (``<name>/<role>`` for a split list, the file stem for a public one).
    ``group`` (the configured group, else the benchmark) is every set's group."""
    roles = sum(1 for s in splits if s.role == "base")
    plain = [s for s in splits if s.role is None]
    for pos, s in enumerate(plain if benchmark is not None else []):
        if numbered and (len(plain) > 1 or zero_shot):
            number = s.number or (pos + 1 if len(plain) > 1 else split_number)
            s.name = f"{benchmark}/split{number}"
        elif len(plain) == 1:
            s.name = f"{benchmark}/split{split_number}" if numbered else f"{benchmark}/val"
        else:
            s.name = f"{benchmark}/{s.name}"
    for s in splits:
        if s.role is not None:
            if benchmark is not None:
                s.name = f"{benchmark}/{s.role}" if roles == 1 else f"{benchmark}/{s.name}/{s.role}"
            elif not public_novel:
                s.name = f"{s.name}/{s.role}"
        if group is not None:
            s.group = group
    return splits


def rename_sets(sets: list[Named], eval_names: list[str] | None, stage: str, owner: str, scope: str) -> list[Named]:
    """``sets`` (dataclasses with a ``name``) renamed by ``eval_names`` (one per set, in order; ``scope``
    says whose sets in the error), then checked to have distinct names."""
    if eval_names is not None:
        names = [s.name for s in sets]  # type: ignore[attr-defined]
        if len(eval_names) != len(sets):
            raise ValueError(
                f"eval_names gives {len(eval_names)} names but {scope} has {len(sets)} evaluation sets ({names})"
            )
        sets = [replace(s, name=n) for s, n in zip(sets, eval_names, strict=True)]  # type: ignore[type-var]
    names = [s.name for s in sets]  # type: ignore[attr-defined]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{owner}: two {stage} evaluation sets are named {dup}; set eval_names")
    return sets
