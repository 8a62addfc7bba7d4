"""WiSE-FT sweep files: one :class:`~tc_clip.results.records.EvalSetResult` per (ratio, evaluation set),
written as ``wise_sweep_<stage>.csv`` (:func:`write_sweep_csv`) and a JSON summary (:func:`write_sweep_json`),
and reduced to the points of the trade-off plot (:func:`tradeoff_points`): x = mean zero-shot top-1,
y = top-1 on the fine-tuning set, one point per ratio."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tc_clip.results.records import EvalSetResult
from tc_clip.results.summary import summarize

ZeroShotSpec = Sequence[str] | Mapping[str, Sequence[str]] | None
#: The zero-shot protocol's evaluation benchmarks: never taken as the fine-tuning set (y axis) by default.
ZERO_SHOT_TARGETS = ("hmdb51", "ucf101", "k600")


@dataclass
class TradeoffPoint:
    """One ratio on the trade-off plot (fractions): x = mean zero-shot top-1, y = fine-tuning-set top-1."""

    alpha: float
    zero_shot_top1: float
    finetune_top1: float
    zero_shot: dict[str, float] = field(default_factory=dict)


def _rows_by_alpha(rows: Sequence[EvalSetResult]) -> dict[float, list[EvalSetResult]]:
    out: dict[float, list[EvalSetResult]] = {}
    for r in rows:
        out.setdefault(float(r.alpha), []).append(r)
    return out


def _value_of(name: str, rows: Sequence[EvalSetResult]) -> float | None:
    """top-1 of the set ``name``, else the mean over the sets of the group ``name``."""
    for r in rows:
        if r.name == name:
            return r.top1
    group = [r.top1 for r in rows if r.group == name and r.role is None]
    return sum(group) / len(group) if group else None


def _units(rows: Sequence[EvalSetResult]) -> list[str]:
    """The groups and ungrouped sets of ``rows``, in order."""
    units: list[str] = []
    for r in rows:
        unit = r.group if r.group is not None and r.role is None else r.name
        if unit not in units:
            units.append(unit)
    return units


def is_zero_shot_target(unit: str) -> bool:
    """A group or set of the zero-shot protocol's evaluation benchmarks (``hmdb51``, ``ucf101/split1``)."""
    return unit in ZERO_SHOT_TARGETS or unit.split("/")[0] in ZERO_SHOT_TARGETS


def default_targets(
    rows: Sequence[EvalSetResult], finetune_set: str | None = None
) -> tuple[str | None, list[str]]:
    """``(finetune_set, zero_shot_sets)`` when not given: the first set (or its group) that is not one of
    the zero-shot benchmarks (:data:`ZERO_SHOT_TARGETS`) is the fine-tuning set, every other group /
    ungrouped set a zero-shot target. Sets that are all zero-shot benchmarks (the suite) have no
    fine-tuning set: ``None``, and no trade-off point (:func:`no_finetune_set`)."""
    units = _units(rows)
    if finetune_set is None:
        finetune_set = next((u for u in units if not is_zero_shot_target(u)), None)
    return finetune_set, [u for u in units if u != finetune_set]


def no_finetune_set(rows: Sequence[EvalSetResult]) -> str | None:
    """Why no trade-off plot is drawn when no ``finetune_set`` is given, or ``None`` if one is found."""
    units = _units(rows)
    if not units or default_targets(rows)[0] is not None:
        return None
    return (f"no trade-off plot: the swept sets ({', '.join(units)}) are all zero-shot targets, none is the set "
            "the model was fine-tuned on (y axis). Name it: add the K-400 run's sweep CSV and "
            "--finetune-set k400/val (tc-clip report), or finetune_set (WeightSpaceSweep)")


def _zero_shot_units(spec: ZeroShotSpec) -> dict[str, list[str]]:
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return {str(k): [str(x) for x in ([v] if isinstance(v, str) else v)] for k, v in spec.items()}
    return {str(s): [str(s)] for s in spec}


def known_names(eval_sets: Sequence[Any]) -> set[str]:
    """Names usable as ``finetune_set`` / ``zero_shot_sets`` entries: set names and group names."""
    names = set()
    for info in eval_sets:
        names.add(str(info.name))
        if getattr(info, "group", None) is not None:
            names.add(str(info.group))
    return names


def check_targets(finetune_set: str | None, zero_shot_sets: ZeroShotSpec, available: set[str]) -> None:
    """``ValueError`` naming every requested set or group that is not in ``available``."""
    wanted = ([finetune_set] if finetune_set else []) + [
        n for names in _zero_shot_units(zero_shot_sets).values() for n in names]
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise ValueError(f"evaluation sets or groups {unknown} are not in this run; it has: "
                         f"{sorted(available)}")


def tradeoff_points(
    rows: Sequence[EvalSetResult], finetune_set: str | None = None, zero_shot_sets: ZeroShotSpec = None
) -> list[TradeoffPoint]:
    """One point per ratio. ``finetune_set``: a set or group name (default: :func:`default_targets`).
    ``zero_shot_sets``: set or group names (a group counts once, as the mean of its splits), or a mapping
    ``{label: [set names]}``; default: every other group / ungrouped set. The zero-shot value is the
    mean over the entries. Ratios lacking a value are left out; no point at all if a side is empty."""
    points = []
    for alpha, at in sorted(_rows_by_alpha(rows).items()):
        ft_name, default_zs = default_targets(at, finetune_set)
        if zero_shot_sets is not None:
            units = _zero_shot_units(zero_shot_sets)
        else:
            units = {u: [u] for u in default_zs}
        y = _value_of(ft_name, at) if ft_name else None
        zs: dict[str, float] = {}
        for label, names in units.items():
            values = [_value_of(n, at) for n in names]
            if values and all(v is not None for v in values):
                zs[label] = sum(values) / len(values)
        if y is None or not zs or len(zs) != len(units):
            continue
        points.append(TradeoffPoint(alpha, sum(zs.values()) / len(zs), y, zs))
    return points


CSV_FIELDS = ("alpha", "stage", "eval_set", "group", "role", "top1", "top5", "videos", "skipped")


def write_sweep_csv(path: str | os.PathLike, rows: Sequence[EvalSetResult]) -> None:
    """One line per (ratio, evaluation set): ``alpha, stage, eval_set, group, role, top1, top5, videos,
    skipped`` (accuracies as fractions)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for r in rows:
            writer.writerow([repr(r.alpha), r.stage or "test", r.name, r.group or "", r.role or "", repr(r.top1),
                             repr(r.top5), r.videos, r.skipped])


def read_sweep_csv(path: str | os.PathLike) -> list[EvalSetResult]:
    """The rows written by :func:`write_sweep_csv`."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("alpha", "eval_set", "top1") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} is not a sweep CSV (no columns {missing})")
        for line in reader:
            rows.append(EvalSetResult(
                alpha=float(line["alpha"]), name=line["eval_set"], top1=float(line["top1"]),
                top5=float(line.get("top5") or "nan"), videos=int(float(line.get("videos") or 0)),
                skipped=int(float(line.get("skipped") or 0)), group=line.get("group") or None,
                role=line.get("role") or None, stage=line.get("stage") or "test",
            ))
    return rows


def read_points_csv(
    path: str | os.PathLike, finetune_set: str | None = None, zero_shot_sets: ZeroShotSpec = None
) -> list[TradeoffPoint]:
    """Trade-off points from a file: a sweep CSV (:func:`write_sweep_csv`; reduced with
    :func:`tradeoff_points`), or a CSV with columns ``zero_shot_top1, finetune_top1`` and optionally
    ``alpha`` (e.g. numbers copied from a paper). Values above 1 are read as percentages."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if "eval_set" in header:
        return tradeoff_points(read_sweep_csv(path), finetune_set, zero_shot_sets)
    if not {"zero_shot_top1", "finetune_top1"} <= set(header):
        raise ValueError(f"{path}: expected a sweep CSV or columns zero_shot_top1, finetune_top1 "
                         f"(and optionally alpha); got {header}")
    points = []
    with open(path, newline="") as f:
        for line in csv.DictReader(f):
            x, y = float(line["zero_shot_top1"]), float(line["finetune_top1"])
            x, y = (x / 100 if x > 1 else x), (y / 100 if y > 1 else y)
            alpha = float(line["alpha"]) if line.get("alpha") not in (None, "") else float("nan")
            points.append(TradeoffPoint(alpha, x, y))
    return points


def write_sweep_json(
    path: str | os.PathLike,
    rows: Sequence[EvalSetResult],
    finetune_set: str | None = None,
    zero_shot_sets: ZeroShotSpec = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"alphas", "finetune_set", "zero_shot_sets", "results": [{"alpha", "sets": {name: {...}},
    "summary": {...}, "finetune_top1", "zero_shot_top1", "zero_shot": {...}}], **extra}``; summaries as
    :func:`~tc_clip.results.summary.summarize` names them (group means, base/novel/HM). Returns it."""
    points = {p.alpha: p for p in tradeoff_points(rows, finetune_set, zero_shot_sets)}
    by_alpha = _rows_by_alpha(rows)
    ft, zs = default_targets(rows, finetune_set)
    doc: dict[str, Any] = {
        "alphas": list(by_alpha),
        "finetune_set": ft,
        "zero_shot_sets": zero_shot_sets if zero_shot_sets is not None else zs,
        "results": [],
    }
    for alpha, at in by_alpha.items():
        entry: dict[str, Any] = {
            "alpha": alpha,
            "sets": {r.name: {k: v for k, v in r.entry().items() if k != "name"} for r in at},
        }
        if at and all(not math.isnan(r.top1) for r in at):
            entry["summary"] = summarize(at)
        p = points.get(alpha)
        if p is not None:
            entry.update(finetune_top1=p.finetune_top1, zero_shot_top1=p.zero_shot_top1,
                         zero_shot=p.zero_shot)
        doc["results"].append(entry)
    doc.update(extra or {})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return doc
