"""The paper's result tables from finished runs (:class:`~tc_clip.results.runs.RunResult`): few-shot,
base-to-novel, zero-shot, fully supervised and the WiSE-FT trade-off, as Markdown and CSV."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tc_clip.results.records import EvalSetResult
from tc_clip.results.runs import ReportError, RunResult
from tc_clip.results.summary import harmonic_mean, mean_std
from tc_clip.results.sweeps import TradeoffPoint

PROTOCOL_TITLES = {
    "few_shot": "Few-shot",
    "base_to_novel": "Base-to-novel",
    "zero_shot": "Zero-shot",
    "fully_supervised": "Fully supervised",
}
#: The paper's column order; other benchmarks follow alphabetically.
BENCHMARK_ORDER = ("k400", "hmdb51", "ucf101", "ssv2", "k600")
#: The zero-shot protocol trains on these: their accuracy is the fine-tuning one, not a zero-shot result.
ZERO_SHOT_TRAINING_SETS = ("k400",)

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
def _benchmark_key(name: str) -> tuple[int, str]:
    return (BENCHMARK_ORDER.index(name) if name in BENCHMARK_ORDER else len(BENCHMARK_ORDER), name)


def _need(run: RunResult, key: str) -> Any:
    value = run.meta.get(key)
    if value is None:
        raise ReportError(f"{run.name}: its {run.protocol} record ({run.source}) has no meta.{key}")
    return value


def _top1(run: RunResult, s: EvalSetResult) -> float:
    value = s.top1
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ReportError(f"{run.name}: evaluation set {s.name!r} has no top-1 in its record ({run.source}): "
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
                              f"has {[s.name for s in run.sets]}")
        s = run.sets[0]
        cells.setdefault((bench, shot), []).append(_top1(run, s))
        detail.rows.append([run.name, bench, shot, run.meta.get("seed"), s.name, _top1(run, s), run.source])
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
        role = s.role
        if role in ("base", "novel"):
            group = str(s.group or run.meta.get("benchmark") or "base_novel")
            entry = out.setdefault(group, {})
            if role in entry:
                raise ReportError(f"{run.name}: two {role} sets for {group} in its record ({run.source})")
            entry[role] = _top1(run, s)
    return out


def base_to_novel_table(runs: Sequence[RunResult]) -> Table:
    """Base / novel / HM per seed, then per benchmark the seeds' mean base and novel and the HM of those
    means (as the paper, after CoOp and ViFi-CLIP, reports it), and the average over benchmarks."""
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
    rows: list[tuple[str, dict[str, MeanStd], list[str]]] = []
    for run in runs:
        splits: dict[str, list[float]] = {}
        for s in run.sets:
            if s.role is None:
                splits.setdefault(str(s.group or s.name), []).append(_top1(run, s))
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
    trained = [b for b in benches if b in ZERO_SHOT_TRAINING_SETS]
    zero_shot = [b for b in benches if b not in trained]
    columns = [f"{b} (trained on)" for b in trained] + zero_shot
    table = Table("zero_shot", "Zero-shot top-1 (%), mean ± std over splits",
                  ["model", *columns, *(["mean"] if len(zero_shot) > 1 else []), "runs"])
    for label, cells, names in rows:
        values: list[Any] = [cells.get(b) for b in trained + zero_shot]
        if len(zero_shot) > 1:
            scores = [cells.get(b) for b in zero_shot]
            values.append(_mean([c.mean for c in scores]) if all(scores) else None)
        table.rows.append([label, *values, ", ".join(names)])
    counts = sorted({c.n for _, cells, _ in rows for c in cells.values()})
    table.notes.append(f"Splits per benchmark: {', '.join(map(str, counts))}; std is the population one (ddof=0).")
    if trained:
        table.notes.append(f"{', '.join(trained)}: the set the zero-shot protocol trains on (its fine-tuning "
                           "accuracy, not a zero-shot result; not in the mean).")
    return table


def per_set_table(runs: Sequence[RunResult], key: str, title: str) -> Table:
    """Top-1 / top-5 of every evaluation set of every run (fully supervised, or runs without a protocol)."""
    table = Table(key, title, ["run", "eval set", "top-1", "top-5", "videos", "record"])
    for run in runs:
        for s in run.sets:
            table.rows.append([run.name, s.name, s.top1, s.top5, s.videos, run.source])
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

def wise_table(points: Sequence[TradeoffPoint], finetune_set: str) -> Table:
    """The trade-off points as a table: one row per ratio."""
    labels = list(points[0].zero_shot) if points else []
    table = Table("wise_tradeoff", "Weight-space ensembling (WiSE-FT) top-1 (%)",
                  ["alpha", finetune_set, "zero-shot mean", *labels])
    for p in points:
        table.rows.append([f"{p.alpha:g}", p.finetune_top1, p.zero_shot_top1, *(p.zero_shot.get(k) for k in labels)])
    return table
