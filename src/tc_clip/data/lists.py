"""The generic inputs of a data module: list files and class folders, read into splits.

A list file (``relative/path.ext label`` lines) needs the ``id,name`` labels CSV of its classes; a
folder with one sub-folder per class names its own classes (in the CSV's order when one is given).
Several evaluation lists each become a set, named by their file stem, with one label file for all or
one each; LLM-rephrased class names (JSON ``{"0": "text"}``) replace the names handed to the model.
The benchmark modules read their own annotation formats instead (:mod:`tc_clip.data.benchmarks`).
"""

from __future__ import annotations

import os
from pathlib import Path

from tc_clip.data import annotations as ann
from tc_clip.data.splits import SplitData

__all__ = ["as_list", "read_labels", "read_split", "read_splits", "with_llm_names"]


def as_list(x: str | list[str] | None) -> list[str]:
    """An option that takes one value or several, as a list."""
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def read_labels(labels: str | None, errors: list[str] | None) -> list[str] | None:
    return ann.read_labels_csv(labels, errors) if labels else None


def read_split(
    spec: str, labels: str | None, list_root: str | None, errors: list[str] | None, name: str | None = None
) -> SplitData:
    """A list file (paths relative to ``list_root``, else the file's folder) or a class folder, named
    ``name`` (default: the file stem or folder name)."""
    names = read_labels(labels, errors)
    if os.path.isdir(spec):
        samples, names = ann.scan_class_folders(spec, names, errors)
        default_name = Path(spec).name
    else:
        if names is None:
            raise ValueError(f"{spec}: a list file needs a labels CSV ('id,name'); set `labels`")
        samples = ann.read_list_file(spec, list_root, len(names), errors)
        default_name = Path(spec).stem
    return SplitData(name or default_name, samples, names)


def read_splits(
    specs: list[str],
    label_spec: str | list[str] | None,
    labels: str | None,
    list_root: str | None,
    group: str | None,
    stage: str,
    errors: list[str] | None,
) -> list[SplitData]:
    """One split per list of ``specs``, with the label files ``label_spec`` (one for all, or one per
    list; default ``labels``), named by file stem (``<stem>_<i>`` where stems repeat), in ``group``."""
    label_files = as_list(label_spec) or [labels] * len(specs)
    if len(label_files) == 1:
        label_files = label_files * len(specs)
    if len(label_files) != len(specs):
        raise ValueError(f"{len(specs)} {stage} lists but {len(label_files)} label files")
    stems = [Path(p).stem for p in specs]
    splits = []
    for i, (spec, lab) in enumerate(zip(specs, label_files, strict=True)):
        name = stems[i] if stems.count(stems[i]) == 1 else f"{stems[i]}_{i}"
        split = read_split(spec, lab, list_root, errors, name=name)
        split.group = group
        splits.append(split)
    return splits


def with_llm_names(
    splits: list[SplitData], files: str | list[str] | None, stage: str, errors: list[str] | None
) -> list[SplitData]:
    """``splits`` with the LLM-rephrased names of ``files`` (one for all, or one per split) as the
    names handed to the model; unchanged without files."""
    llm = as_list(files)
    if not llm:
        return splits
    if len(llm) == 1:
        llm = llm * len(splits)
    if len(llm) != len(splits):
        raise ValueError(f"{len(splits)} {stage} sets but {len(llm)} eval_llm_names files")
    for split, path in zip(splits, llm, strict=True):
        if path:
            split.display_names = ann.read_llm_names(path, len(split.class_names), errors)
    return splits
