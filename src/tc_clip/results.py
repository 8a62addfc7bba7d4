"""Run results on disk and the tables made from them: evaluation records, WiSE-FT sweep files and
plots, and the paper's result tables (``tc-clip report`` / ``python -m tc_clip.results``).

Every validation or test epoch appends one record to ``<log dir>/eval_results.jsonl``::

    {"stage": "val" | "test", "epoch": 3, "step": 120, "ckpt_path": null | "...",
     "meta": {"protocol": "few_shot", "benchmark": "hmdb51", "shot": 2, "seed": 1, ...},
     "sets": [{"name": "hmdb51/split1", "group": "hmdb51", "role": null, "top1": 0.51, "top5": 0.83,
               "videos": 1530, "skipped": 0}],
     "summary": {"hmdb51/top1_mean": 0.51, ...}}

Accuracies are fractions in [0, 1]. Counts live here, not in the per-epoch metric curves.

A :class:`~tc_clip.callbacks.WeightSpaceSweep` writes one line per (ratio, evaluation set) to
``wise_sweep_<stage>.csv`` (:func:`write_sweep_csv`), a JSON summary and the trade-off plot
(:func:`tradeoff_points`, :func:`plot_tradeoff`). :func:`report_main` turns finished run folders into
the paper's tables (see its docstring for which record of a run counts).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVAL_RESULTS_FILE = "eval_results.jsonl"


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_eval_record(log_dir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Append one evaluation record (see the module docstring) to ``<log_dir>/eval_results.jsonl``."""
    path = Path(log_dir) / EVAL_RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = json.loads(json.dumps(record, default=str), parse_constant=lambda c: None)
    clean["sets"] = [{k: _finite_or_none(v) for k, v in s.items()} for s in clean.get("sets", [])]
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(clean, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return path


def read_eval_records(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of one run folder, in the order they were written. A torn last line (a run killed
    while writing) is ignored; any other line that is not a JSON object raises, naming file and line."""
    path = Path(run_dir) / EVAL_RESULTS_FILE
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        lines = [(n, line.strip()) for n, line in enumerate(f, start=1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                continue
            raise ValueError(f"{path}:{n}: not a JSON record ({err.msg})") from err
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


# ------------------------------------------------------------------------------ WiSE-FT sweep files
@dataclass
class SetResult:
    """Accuracy of one evaluation set at one ratio (fractions in [0, 1])."""

    alpha: float
    eval_set: str
    top1: float
    top5: float
    videos: int
    skipped: int
    group: str | None = None
    role: str | None = None
    stage: str = "test"


ZeroShotSpec = Sequence[str] | Mapping[str, Sequence[str]] | None


@dataclass
class TradeoffPoint:
    """One ratio on the trade-off plot (fractions): x = mean zero-shot top-1, y = fine-tuning-set top-1."""

    alpha: float
    zero_shot_top1: float
    finetune_top1: float
    zero_shot: dict[str, float] = field(default_factory=dict)


def _rows_by_alpha(rows: Sequence[SetResult]) -> dict[float, list[SetResult]]:
    out: dict[float, list[SetResult]] = {}
    for r in rows:
        out.setdefault(float(r.alpha), []).append(r)
    return out


def _value_of(name: str, rows: Sequence[SetResult]) -> float | None:
    """top-1 of the set ``name``, else the mean over the sets of the group ``name``."""
    for r in rows:
        if r.eval_set == name:
            return r.top1
    group = [r.top1 for r in rows if r.group == name and r.role is None]
    return sum(group) / len(group) if group else None


def default_targets(
    rows: Sequence[SetResult], finetune_set: str | None = None
) -> tuple[str | None, list[str]]:
    """``(finetune_set, zero_shot_sets)`` when not given: the first set (or its group) is the
    fine-tuning set, every other group / ungrouped set a zero-shot target."""
    units: list[str] = []
    for r in rows:
        unit = r.group if r.group is not None and r.role is None else r.eval_set
        if unit not in units:
            units.append(unit)
    if finetune_set is None:
        finetune_set = units[0] if units else None
    return finetune_set, [u for u in units if u != finetune_set]


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
    rows: Sequence[SetResult], finetune_set: str | None = None, zero_shot_sets: ZeroShotSpec = None
) -> list[TradeoffPoint]:
    """One point per ratio. ``finetune_set``: a set or group name (default: the first set).
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


def write_sweep_csv(path: str | os.PathLike, rows: Sequence[SetResult]) -> None:
    """One line per (ratio, evaluation set): ``alpha, stage, eval_set, group, role, top1, top5, videos,
    skipped`` (accuracies as fractions)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for r in rows:
            writer.writerow([repr(r.alpha), r.stage, r.eval_set, r.group or "", r.role or "", repr(r.top1),
                             repr(r.top5), r.videos, r.skipped])


def read_sweep_csv(path: str | os.PathLike) -> list[SetResult]:
    """The rows written by :func:`write_sweep_csv`."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("alpha", "eval_set", "top1") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} is not a sweep CSV (no columns {missing})")
        for line in reader:
            rows.append(SetResult(
                alpha=float(line["alpha"]), eval_set=line["eval_set"], top1=float(line["top1"]),
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
    rows: Sequence[SetResult],
    finetune_set: str | None = None,
    zero_shot_sets: ZeroShotSpec = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"alphas", "finetune_set", "zero_shot_sets", "results": [{"alpha", "sets": {name: {...}},
    "summary": {...}, "finetune_top1", "zero_shot_top1", "zero_shot": {...}}], **extra}``; summaries as
    :func:`tc_clip.lightning.summarize` names them (group means, base/novel/HM, ``top1``). Returns it."""
    from tc_clip.lightning.summary import EvalSetResult, summarize

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
            "sets": {r.eval_set: {"top1": r.top1, "top5": r.top5, "videos": r.videos, "skipped": r.skipped,
                                  "group": r.group, "role": r.role} for r in at},
        }
        if at and all(not math.isnan(r.top1) for r in at):
            evals = [EvalSetResult(r.eval_set, r.top1, r.top5, r.group, r.role) for r in at]
            entry["summary"] = summarize(evals)
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


def plot_tradeoff(
    points: Sequence[TradeoffPoint],
    path: str | os.PathLike,
    label: str = "TC-CLIP",
    baselines: Mapping[str, Sequence[TradeoffPoint]] | None = None,
    finetune_label: str = "fine-tuning set",
    title: str | None = "Weight-space ensembling",
) -> str:
    """The trade-off plot (PNG, matplotlib's Agg backend): x = mean zero-shot top-1 (%), y = top-1 on the
    fine-tuning set (%), one point per ratio labelled with α, joined in α order; ``baselines`` (e.g.
    ``{"ViFi-CLIP": points}``) drawn on the same axes. Returns the path."""
    if not points:
        raise ValueError("plot_tradeoff(): no points (the run needs a fine-tuning set and a zero-shot set)")
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, leaves the session's backend alone

    fig = Figure(figsize=(6.0, 4.5), dpi=150)
    ax = fig.add_subplot(1, 1, 1)
    series = [(label, points, "o", "C0")]
    for i, (name, pts) in enumerate((baselines or {}).items()):
        series.append((name, pts, "s^Dv"[i % 4], f"C{i + 1}"))
    for name, pts, marker, colour in series:
        pts = sorted(pts, key=lambda p: (math.isnan(p.alpha), p.alpha))
        xs = [100 * p.zero_shot_top1 for p in pts]
        ys = [100 * p.finetune_top1 for p in pts]
        ax.plot(xs, ys, marker=marker, color=colour, label=name, linewidth=1.2, markersize=5)
        labels: dict[tuple[float, float], list[str]] = {}  # ratios landing on the same point share a label
        for p, x, y in zip(pts, xs, ys, strict=True):
            if not math.isnan(p.alpha):
                labels.setdefault((round(x, 6), round(y, 6)), []).append(f"{p.alpha:g}")
        for (x, y), text in labels.items():
            ax.annotate(", ".join(text), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=colour)
    ax.set_xlabel("mean zero-shot top-1 (%)")
    ax.set_ylabel(f"{finetune_label} top-1 (%)")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8, title="points labelled with α", title_fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return str(path)


# ------------------------------------------------------------------------------------ report tables
CONFIG_FILE = "config.yaml"
PROTOCOL_TITLES = {
    "few_shot": "Few-shot",
    "base_to_novel": "Base-to-novel",
    "zero_shot": "Zero-shot",
    "fully_supervised": "Fully supervised",
}
#: The paper's column order; other benchmarks follow alphabetically.
BENCHMARK_ORDER = ("k400", "hmdb51", "ucf101", "ssv2", "k600")


class ReportError(ValueError):
    """A run folder that cannot be reported; the message names the folder, file or key at fault."""


@dataclass(frozen=True)
class MeanStd:
    """Mean ± population standard deviation over the ``n`` splits of one benchmark (fractions)."""

    mean: float
    std: float
    n: int


@dataclass
class Table:
    """One report table: ``rows`` hold strings, ints, fractions (shown as %), :class:`MeanStd` or None."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """The record of one run folder that the tables use, and why that one (``source``)."""

    name: str
    path: Path
    record: dict[str, Any]
    source: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> dict[str, Any]:
        return self.record.get("meta") or {}

    @property
    def protocol(self) -> str | None:
        return self.meta.get("protocol")

    @property
    def sets(self) -> list[dict[str, Any]]:
        return list(self.record.get("sets") or [])


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``<run_dir>/config.yaml`` as saved by LightningCLI (``{}`` when the run has none)."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ReportError(f"{path}: not valid YAML ({err})") from err
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ReportError(f"{path}: expected a mapping of options, got {type(config).__name__}")
    return config


def monitored_metric(config: Mapping[str, Any]) -> tuple[str | None, str]:
    """``(monitor, mode)`` of the run's checkpoint selection: ``checkpoint.monitor`` / ``.mode`` (the
    ``tc-clip`` options), else those of a ``ModelCheckpoint`` in ``trainer.callbacks``."""
    ckpt = config.get("checkpoint")
    if isinstance(ckpt, Mapping) and "monitor" in ckpt:
        return ckpt.get("monitor"), str(ckpt.get("mode") or "max")
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    for cb in callbacks if isinstance(callbacks, list) else [callbacks]:
        if isinstance(cb, Mapping) and str(cb.get("class_path", "")).endswith("ModelCheckpoint"):
            args = cb.get("init_args") or {}
            return args.get("monitor"), str(args.get("mode") or "max")
    return None, "max"


def record_metric(record: Mapping[str, Any], name: str) -> float | None:
    """The value of a logged metric name in a record: ``{stage}/{set}/top1|top5`` from ``sets``, any other
    ``{stage}/{key}`` from ``summary``; None when the record does not hold it."""
    stage, _, key = name.partition("/")
    if stage != record.get("stage") or not key:
        return None
    value = (record.get("summary") or {}).get(key)
    for s in record.get("sets") or []:
        for metric in ("top1", "top5"):
            if key == f"{s.get('name')}/{metric}":
                value = s.get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def select_record(records: Sequence[dict[str, Any]], monitor: str | None, mode: str, where: str) -> tuple[dict, str]:
    """The record a run reports: its last ``test`` record; else the ``val`` record of the epoch that the
    run's checkpoint selection kept (best ``monitor``, first of equal values, as ``ModelCheckpoint``);
    else, with no monitor, the last ``val`` record. Returns ``(record, a phrase saying which)``."""
    tests = [r for r in records if r.get("stage") == "test"]
    if tests:
        return tests[-1], "test"
    by_epoch: dict[Any, dict] = {}
    for r in records:
        if r.get("stage") == "val":
            by_epoch.pop(r.get("epoch"), None)  # a resumed run re-validating an epoch: the later one counts
            by_epoch[r.get("epoch")] = r
    vals = list(by_epoch.values())
    if not vals:
        raise ReportError(f"{where}: {EVAL_RESULTS_FILE} holds no val or test record")
    if monitor is None:
        return vals[-1], f"val epoch {vals[-1].get('epoch')} (last; no checkpoint.monitor)"
    if mode not in ("max", "min"):
        raise ReportError(f"{where}: checkpoint.mode {mode!r} is neither 'max' nor 'min'")
    scored = [(record_metric(r, monitor), r) for r in vals]
    scored = [(v, r) for v, r in scored if v is not None and math.isfinite(v)]
    if not scored:
        keys = sorted({f"val/{s.get('name')}/top1" for r in vals for s in r.get("sets") or []}
                      | {f"val/{k}" for r in vals for k in (r.get("summary") or {})})
        raise ReportError(f"{where}: the monitored metric {monitor!r} (checkpoint.monitor in {CONFIG_FILE}) is in "
                          f"no val record; the records hold {keys}")
    best_value, best = scored[0]
    for value, r in scored[1:]:
        if (value > best_value) if mode == "max" else (value < best_value):
            best_value, best = value, r
    return best, f"val epoch {best.get('epoch')} (best {monitor})"


def load_run(run_dir: str | os.PathLike, name: str | None = None) -> RunResult:
    """One finished run folder (``eval_results.jsonl``, ``config.yaml``) with its selected record."""
    path = Path(run_dir)
    name = name or str(path)
    try:
        records = read_eval_records(path)
    except ValueError as err:
        raise ReportError(str(err)) from err
    if not records:
        raise ReportError(f"{name}: no {EVAL_RESULTS_FILE} with evaluation records")
    config = read_run_config(path)
    monitor, mode = monitored_metric(config)
    record, source = select_record(records, monitor, mode, name)
    if not isinstance(record.get("sets"), list) or not all(isinstance(s, dict) for s in record["sets"]):
        raise ReportError(f"{name}: the selected record ({source}) has no list of evaluation sets under 'sets'")
    return RunResult(name, path, record, source, config)


def find_runs(paths: Sequence[str | os.PathLike]) -> tuple[list[tuple[str, Path]], list[Path]]:
    """``([(name, run folder)], [sweep CSV files])`` for the command-line arguments: a run folder, a
    folder searched recursively for run folders and ``wise_sweep_*.csv`` files, or a sweep CSV file."""
    runs: list[tuple[str, Path]] = []
    sweeps: list[Path] = []
    for arg in paths:
        p = Path(arg)
        if p.is_file():
            if p.suffix != ".csv":
                raise ReportError(f"{arg}: give run folders (with {EVAL_RESULTS_FILE}) or WiSE-FT sweep CSV files")
            sweeps.append(p)
            continue
        if not p.is_dir():
            raise ReportError(f"{arg}: no such run folder or file")
        found = sorted({f.parent for f in p.rglob(EVAL_RESULTS_FILE)})
        csvs = sorted(p.rglob("wise_sweep_*.csv"))
        if not found and not csvs:
            raise ReportError(f"{arg}: no {EVAL_RESULTS_FILE} and no wise_sweep_*.csv in it or below it")
        runs += [(str(f), f) for f in found if all(f != r for _, r in runs)]
        sweeps += [c for c in csvs if c not in sweeps]
    return runs, sweeps


def _benchmark_key(name: str) -> tuple[int, str]:
    return (BENCHMARK_ORDER.index(name) if name in BENCHMARK_ORDER else len(BENCHMARK_ORDER), name)


def _need(run: RunResult, key: str) -> Any:
    value = run.meta.get(key)
    if value is None:
        raise ReportError(f"{run.name}: its {run.protocol} record ({run.source}) has no meta.{key}")
    return value


def _top1(run: RunResult, s: Mapping[str, Any]) -> float:
    value = s.get("top1")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ReportError(f"{run.name}: evaluation set {s.get('name')!r} has no top-1 in its record ({run.source}): "
                          f"{value!r}")
    return float(value)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def few_shot_tables(runs: Sequence[RunResult]) -> list[Table]:
    """The paper's few-shot layout (benchmarks × K, the mean over K, and the average row: the mean over the
    benchmarks per K, whose last cell is the mean of every cell, the paper's single number) and the runs."""
    cells: dict[tuple[str, int], list[float]] = {}
    detail = Table("few_shot_runs", "Few-shot runs", ["run", "benchmark", "K", "seed", "eval set", "top-1",
                                                       "record"])
    for run in runs:
        bench, shot = str(_need(run, "benchmark")), int(_need(run, "shot"))
        if len(run.sets) != 1:
            raise ReportError(f"{run.name}: a few-shot record needs one evaluation set, this one ({run.source}) "
                              f"has {[s.get('name') for s in run.sets]}")
        s = run.sets[0]
        cells.setdefault((bench, shot), []).append(_top1(run, s))
        detail.rows.append([run.name, bench, shot, run.meta.get("seed"), s.get("name"), _top1(run, s), run.source])
    benches = sorted({b for b, _ in cells}, key=_benchmark_key)
    shots = sorted({k for _, k in cells})
    main = Table("few_shot", "Few-shot top-1 (%)", ["benchmark", *(f"K={k}" for k in shots), "mean over K"])
    for b in benches:
        values = [_mean(cells[b, k]) if (b, k) in cells else None for k in shots]
        present = [v for v in values if v is not None]
        main.rows.append([b, *values, _mean(present)])
    if len(benches) > 1:
        per_k = [[_mean(cells[b, k]) for b in benches if (b, k) in cells] for k in shots]
        every = [_mean(v) for v in cells.values()]
        main.rows.append(["average", *(_mean(v) for v in per_k), _mean(every)])
    missing = [f"{b} K={k}" for b in benches for k in shots if (b, k) not in cells]
    if missing:
        main.notes.append(f"No run for {', '.join(missing)}: the means use the cells present.")
    repeated = [f"{b} K={k} ({len(v)} runs)" for (b, k), v in cells.items() if len(v) > 1]
    if repeated:
        main.notes.append(f"Cells that average several runs: {', '.join(repeated)}.")
    return [main, detail]


def _roles(run: RunResult) -> dict[str, dict[str, float]]:
    """``{benchmark: {"base": top1, "novel": top1}}`` from the sets with a base/novel role."""
    out: dict[str, dict[str, float]] = {}
    for s in run.sets:
        role = s.get("role")
        if role in ("base", "novel"):
            group = str(s.get("group") or run.meta.get("benchmark") or "base_novel")
            entry = out.setdefault(group, {})
            if role in entry:
                raise ReportError(f"{run.name}: two {role} sets for {group} in its record ({run.source})")
            entry[role] = _top1(run, s)
    return out


def base_to_novel_table(runs: Sequence[RunResult]) -> Table:
    """Base / novel / HM per seed, then per benchmark the seeds' mean base and novel and the HM of those
    means (as the paper, after CoOp and ViFi-CLIP, reports it), and the average over benchmarks."""
    from tc_clip.lightning.summary import harmonic_mean

    table = Table("base_to_novel", "Base-to-novel top-1 (%)", ["benchmark", "seed", "base", "novel", "HM", "run",
                                                              "record"])
    per_bench: dict[str, list[tuple[RunResult, dict[str, float]]]] = {}
    for run in runs:
        groups = _roles(run)
        for group, entry in groups.items():
            if set(entry) != {"base", "novel"}:
                raise ReportError(f"{run.name}: its record ({run.source}) has a {next(iter(entry))} set for "
                                  f"{group} but no {'novel' if 'base' in entry else 'base'} set")
            per_bench.setdefault(group, []).append((run, entry))
        if not groups:
            raise ReportError(f"{run.name}: a base-to-novel record ({run.source}) with no base/novel sets")
    means: list[tuple[float, float]] = []
    for bench in sorted(per_bench, key=_benchmark_key):
        entries = sorted(per_bench[bench], key=lambda e: str(e[0].meta.get("seed")))
        for run, e in entries:
            table.rows.append([bench, run.meta.get("seed"), e["base"], e["novel"], harmonic_mean(e["base"], e["novel"]),
                               run.name, run.source])
        base, novel = _mean([e["base"] for _, e in entries]), _mean([e["novel"] for _, e in entries])
        means.append((base, novel))
        table.rows.append([bench, f"mean of {len(entries)}", base, novel, harmonic_mean(base, novel), "", ""])
    if len(means) > 1:
        base, novel = _mean([b for b, _ in means]), _mean([n for _, n in means])
        table.rows.append(["average", f"{len(means)} benchmarks", base, novel, harmonic_mean(base, novel), "", ""])
    table.notes.append("HM of a mean row is the harmonic mean of its mean base and mean novel accuracy, not the "
                       "mean of the per-seed HMs.")
    return table


def _model_label(run: RunResult) -> str:
    """What a zero-shot row evaluates: the tested checkpoint (or release file), with the WiSE-FT ratio."""
    model = run.config.get("model") or {}
    label = run.record.get("ckpt_path") or (model.get("init_args") or model).get("release_checkpoint")
    label = str(label) if label else f"{run.name} (no checkpoint)"
    callbacks = (run.config.get("trainer") or {}).get("callbacks") or []
    for cb in callbacks if isinstance(callbacks, list) else [callbacks]:
        if isinstance(cb, Mapping) and str(cb.get("class_path", "")).endswith("WeightSpaceEnsemble"):
            label += f" (WiSE-FT α={(cb.get('init_args') or {}).get('alpha', 0.7):g})"
    return label


def zero_shot_table(runs: Sequence[RunResult]) -> Table:
    """Mean ± std over the splits of each benchmark, one row per evaluated model (runs of the same
    checkpoint share a row; a benchmark evaluated twice for one model opens a second row)."""
    from tc_clip.lightning.summary import mean_std

    rows: list[tuple[str, dict[str, MeanStd], list[str]]] = []
    for run in runs:
        splits: dict[str, list[float]] = {}
        for s in run.sets:
            if s.get("role") is None:
                splits.setdefault(str(s.get("group") or s.get("name")), []).append(_top1(run, s))
        if not splits:
            raise ReportError(f"{run.name}: a zero-shot record ({run.source}) with no evaluation set")
        label = _model_label(run)
        row = next((r for r in rows if r[0] == label and not set(r[1]) & set(splits)), None)
        if row is None:
            row = (label, {}, [])
            rows.append(row)
        for group, values in splits.items():
            row[1][group] = MeanStd(*mean_std(values), len(values))
        row[2].append(run.name)
    benches = sorted({b for _, cells, _ in rows for b in cells}, key=_benchmark_key)
    table = Table("zero_shot", "Zero-shot top-1 (%), mean ± std over splits",
                  ["model", *benches, *(["mean"] if len(benches) > 1 else []), "runs"])
    for label, cells, names in rows:
        values: list[Any] = [cells.get(b) for b in benches]
        if len(benches) > 1:
            values.append(_mean([c.mean for c in values]) if all(values) else None)
        table.rows.append([label, *values, ", ".join(names)])
    counts = sorted({c.n for _, cells, _ in rows for c in cells.values()})
    table.notes.append(f"Splits per benchmark: {', '.join(map(str, counts))}; std is the population one (ddof=0).")
    return table


def per_set_table(runs: Sequence[RunResult], key: str, title: str) -> Table:
    """Top-1 / top-5 of every evaluation set of every run (fully supervised, or runs without a protocol)."""
    table = Table(key, title, ["run", "eval set", "top-1", "top-5", "videos", "record"])
    for run in runs:
        for s in run.sets:
            table.rows.append([run.name, s.get("name"), s.get("top1"), s.get("top5"), s.get("videos"), run.source])
    return table


def report_tables(runs: Sequence[RunResult]) -> list[Table]:
    """Every table the runs allow, in the paper's order."""
    by_protocol: dict[str | None, list[RunResult]] = {}
    for run in runs:
        by_protocol.setdefault(run.protocol, []).append(run)
    unknown = [p for p in by_protocol if p is not None and p not in PROTOCOL_TITLES]
    if unknown:
        names = [r.name for p in unknown for r in by_protocol[p]]
        raise ReportError(f"unknown meta.protocol {unknown} in {names}; known: {list(PROTOCOL_TITLES)}")
    tables: list[Table] = []
    if "few_shot" in by_protocol:
        tables += few_shot_tables(by_protocol["few_shot"])
    if "base_to_novel" in by_protocol:
        tables.append(base_to_novel_table(by_protocol["base_to_novel"]))
    if "zero_shot" in by_protocol:
        tables.append(zero_shot_table(by_protocol["zero_shot"]))
    if "fully_supervised" in by_protocol:
        tables.append(per_set_table(by_protocol["fully_supervised"], "fully_supervised", "Fully supervised (%)"))
    if None in by_protocol:
        tables.append(per_set_table(by_protocol[None], "other", "Runs without meta.protocol (%)"))
    return tables


def _md_cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, MeanStd):
        return f"{100 * value.mean:.1f} ± {100 * value.std:.1f}"
    if isinstance(value, float):
        return f"{100 * value:.1f}"
    return str(value).replace("|", "\\|")


def table_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table (percentages with one decimal, as the paper), notes below it."""
    align = ["---" if any(isinstance(r[i], str) for r in table.rows) else "---:" for i in range(len(table.columns))]
    lines = [f"| {' | '.join(table.columns)} |", f"| {' | '.join(align)} |"]
    lines += [f"| {' | '.join(_md_cell(v) for v in row)} |" for row in table.rows]
    lines += [f"\n{note}" for note in table.notes]
    return "\n".join(lines)


def _csv_pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.4f}"


def write_table_csv(table: Table, path: str | os.PathLike) -> Path:
    """The table as CSV, percentages with four decimals; a mean ± std column becomes ``<col> mean``,
    ``<col> std`` and ``<col> splits``."""
    split = [any(isinstance(r[i], MeanStd) for r in table.rows) for i in range(len(table.columns))]
    header: list[str] = []
    for col, is_ms in zip(table.columns, split, strict=True):
        header += [f"{col} mean", f"{col} std", f"{col} splits"] if is_ms else [col]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in table.rows:
            out: list[Any] = []
            for value, is_ms in zip(row, split, strict=True):
                if is_ms:
                    out += ["", "", ""] if value is None else [_csv_pct(value.mean), _csv_pct(value.std), value.n]
                else:
                    out.append(_csv_pct(value) if isinstance(value, float) else ("" if value is None else value))
            writer.writerow(out)
    return path


def plot_few_shot(table: Table, path: str | os.PathLike) -> str:
    """Few-shot top-1 (%) against K (log scale), one line per benchmark and the average (PNG)."""
    from matplotlib.figure import Figure

    shots = [int(c.removeprefix("K=")) for c in table.columns if c.startswith("K=")]
    fig = Figure(figsize=(5.0, 3.8), dpi=150)
    ax = fig.add_subplot(1, 1, 1)
    for i, row in enumerate(table.rows):
        points = [(k, 100 * v) for k, v in zip(shots, row[1:1 + len(shots)], strict=True) if v is not None]
        style = {"color": "black", "linestyle": "--"} if row[0] == "average" else {"color": f"C{i}"}
        ax.plot([k for k, _ in points], [v for _, v in points], marker="o", label=str(row[0]), **style)
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [str(k) for k in shots])
    ax.set_xlabel("shots per class K")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("Few-shot")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return str(path)


def wise_table(points: Sequence[TradeoffPoint], finetune_set: str) -> Table:
    """The trade-off points as a table: one row per ratio."""
    labels = list(points[0].zero_shot) if points else []
    table = Table("wise_tradeoff", "Weight-space ensembling (WiSE-FT) top-1 (%)",
                  ["alpha", finetune_set, "zero-shot mean", *labels])
    for p in points:
        table.rows.append([f"{p.alpha:g}", p.finetune_top1, p.zero_shot_top1, *(p.zero_shot.get(k) for k in labels)])
    return table


def _wise_section(sweeps: Sequence[Path], args: argparse.Namespace, out: Path) -> tuple[Table | None, list[str]]:
    rows = [r for path in sweeps for r in read_sweep_csv(path)]
    if len({(r.alpha, r.eval_set) for r in rows}) != len(rows):
        raise ReportError(f"the sweep CSV files hold the same (alpha, eval_set) twice: {[str(p) for p in sweeps]}")
    available = {r.eval_set for r in rows} | {r.group for r in rows if r.group}
    check_targets(args.finetune_set, args.zero_shot_sets, available)
    points = tradeoff_points(rows, args.finetune_set, args.zero_shot_sets)
    write_sweep_csv(out / "wise_sweep.csv", rows)
    write_sweep_json(out / "wise_sweep.json", rows, args.finetune_set, args.zero_shot_sets)
    files = ["wise_sweep.csv", "wise_sweep.json"]
    ft = str(args.finetune_set or default_targets(rows)[0])
    if not points:
        return None, files
    baselines = {}
    for spec in args.baseline:
        name, _, path = spec.rpartition("=")
        baselines[name or Path(path).stem] = read_points_csv(path, args.finetune_set, args.zero_shot_sets)
    plot_tradeoff(points, out / "wise_tradeoff.png", label=args.label, baselines=baselines, finetune_label=ft)
    return wise_table(points, ft), [*files, "wise_tradeoff.png"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tc-clip report",
        description="Turn finished runs into the paper's tables (Markdown on stdout; Markdown, CSV and plots "
                    "in --output).",
        epilog="Which record of a run counts: its last test record; else the validation record of the epoch "
               "its checkpoint selection kept (best checkpoint.monitor in config.yaml).",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run folders (with eval_results.jsonl), folders holding runs, or WiSE-FT sweep CSVs")
    parser.add_argument("-o", "--output", default="report", help="folder for report.md, CSVs and plots")
    parser.add_argument("--finetune-set", default=None, help="WiSE-FT plot: set or group of the fine-tuning set (y)")
    parser.add_argument("--zero-shot-sets", nargs="+", default=None,
                        help="WiSE-FT plot: sets or groups averaged for x (default: every other set)")
    parser.add_argument("--baseline", action="append", default=[], metavar="LABEL=CSV",
                        help="WiSE-FT plot: another sweep on the same axes (sweep CSV or "
                             "zero_shot_top1,finetune_top1 CSV)")
    parser.add_argument("--label", default="TC-CLIP", help="WiSE-FT plot: legend entry of these runs")
    return parser


def report_main(argv: Sequence[str] | None = None) -> int:
    """``tc-clip report RUN...``: the paper's tables from finished runs, as Markdown (printed, and
    ``<output>/report.md``), one CSV per table and plots (few-shot accuracy against K; the WiSE-FT
    trade-off when sweep CSVs are found). Returns the exit status (2 on bad input, with the reason)."""
    parser = _parser()
    args = parser.parse_args(argv)
    out = Path(args.output)
    try:
        found, sweeps = find_runs(args.runs)
        runs = [load_run(path, name) for name, path in found]
        tables = report_tables(runs)
        files: list[str] = []
        wise = None
        if sweeps:
            wise, files = _wise_section(sweeps, args, out)
    except (ReportError, ValueError, OSError) as err:
        print(f"tc-clip report: error: {err}", file=sys.stderr)
        return 2
    if not tables and wise is None:
        print("tc-clip report: error: nothing to report (no records, no sweep with a trade-off point)",
              file=sys.stderr)
        return 2
    if wise is not None:
        tables.append(wise)
    parts = ["# Results", "", "Accuracies in %. A run reports its last test record, else the validation record "
             "of the epoch its checkpoint selection kept (best `checkpoint.monitor`); the `record` column says which."]
    for table in tables:
        files.append(write_table_csv(table, out / f"{table.key}.csv").name)
        parts += ["", f"## {table.title}", "", table_markdown(table)]
        if table.key == "few_shot" and any(c.startswith("K=") for c in table.columns):
            files.append(Path(plot_few_shot(table, out / "few_shot.png")).name)
            parts += ["", "![few-shot top-1 against K](few_shot.png)"]
        if table.key == "wise_tradeoff":
            parts += ["", "![WiSE-FT trade-off](wise_tradeoff.png)"]
    text = "\n".join(parts) + "\n"
    (out / "report.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {', '.join(str(out / f) for f in ['report.md', *files])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(report_main())
