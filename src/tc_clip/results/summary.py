"""Pure functions that turn per-evaluation-set accuracies (:class:`~tc_clip.results.records.EvalSetResult`)
into the numbers each protocol reports, and the table printed at the end of an evaluation.

Accuracies are fractions in [0, 1] (as torchmetrics returns them); the functions are unit-free, so
percentages work too as long as they are not mixed.

* zero-shot: mean ± standard deviation over the splits of one benchmark (:func:`group_mean_std`);
  the standard deviation is the population one (``ddof=0``, numpy's default), as in the papers that
  report "mean ± std over three splits";
* base-to-novel: base accuracy, novel accuracy and their harmonic mean (:func:`harmonic_mean`,
  :func:`base_novel_summary`);
* few-shot: the average over the shot counts K, each K being its own run (:func:`few_shot_average`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from tc_clip.results.records import EvalSetResult


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (``ddof=0``) of a non-empty sequence."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std() needs at least one value")
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return mean, math.sqrt(var)


def harmonic_mean(base: float, novel: float) -> float:
    """Harmonic mean of base and novel accuracy, ``2·b·n / (b + n)``; 0 when both are 0."""
    base, novel = float(base), float(novel)
    if base < 0 or novel < 0:
        raise ValueError(f"accuracies must be non-negative, got base={base}, novel={novel}")
    if base + novel == 0:
        return 0.0
    return 2.0 * base * novel / (base + novel)


def group_mean_std(results: Iterable[EvalSetResult], key: str = "top1") -> dict[str, tuple[float, float]]:
    """Zero-shot summary: ``{group: (mean, std)}`` of ``key`` over the sets that share a group.

    Sets without a group and sets with a role (base-to-novel) are left out.
    """
    groups: dict[str, list[float]] = {}
    for r in results:
        if r.group is None or r.role is not None:
            continue
        value = getattr(r, key)
        if value is None:
            continue
        groups.setdefault(r.group, []).append(value)
    return {g: mean_std(v) for g, v in groups.items()}


def base_novel_summary(results: Iterable[EvalSetResult], key: str = "top1") -> dict[str, dict[str, float]]:
    """Base-to-novel summary: ``{group: {"base": b, "novel": n, "hm": HM}}``.

    A group needs exactly one ``role="base"`` and one ``role="novel"`` set; sets without a group are
    gathered under the group name ``"base_novel"``. Incomplete groups are skipped.
    """
    by_group: dict[str, dict[str, float]] = {}
    for r in results:
        if r.role not in ("base", "novel"):
            continue
        group = r.group or "base_novel"
        entry = by_group.setdefault(group, {})
        if r.role in entry:
            raise ValueError(f"group {group!r} has two {r.role!r} evaluation sets")
        entry[r.role] = float(getattr(r, key))
    out = {}
    for group, entry in by_group.items():
        if "base" in entry and "novel" in entry:
            out[group] = {**entry, "hm": harmonic_mean(entry["base"], entry["novel"])}
    return out


def few_shot_average(results_by_shots: Mapping[int, float]) -> float:
    """Few-shot summary: the plain average of the accuracies of the runs with K = 2, 4, 8, 16 shots."""
    if not results_by_shots:
        raise ValueError("few_shot_average() needs at least one result")
    return sum(float(v) for v in results_by_shots.values()) / len(results_by_shots)


def primary_top1(results: Sequence[EvalSetResult]) -> float:
    """One number for the whole of ``results`` (not logged: monitored metrics name their set or group).

    * base-to-novel sets present → mean of the harmonic means of the groups;
    * otherwise → mean over groups of the group mean (a set without a group counts as its own group),
      so a benchmark with three splits weighs as much as a benchmark with one.
    """
    if not results:
        raise ValueError("primary_top1() needs at least one result")
    b2n = base_novel_summary(results)
    if b2n:
        return sum(v["hm"] for v in b2n.values()) / len(b2n)
    groups: dict[str, list[float]] = {}
    for r in results:
        groups.setdefault(r.group if r.group is not None else f"__set__{r.name}", []).append(r.top1)
    means = [sum(v) / len(v) for v in groups.values()]
    return sum(means) / len(means)


def summarize(results: Sequence[EvalSetResult]) -> dict[str, float]:
    """The protocol summaries as flat metric names (without stage prefix), e.g.::

        {"hmdb51/top1_mean": .., "hmdb51/top1_std": .., "k400/base": .., "k400/novel": .., "k400/hm": ..}

    Mean ± std only for groups of two or more sets (a single set's mean would repeat its own top-1); there is
    no plain ``top1`` alias: every monitored metric names its set or group.
    """
    out: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for r in results:
        if r.group is not None and r.role is None:
            sizes[r.group] = sizes.get(r.group, 0) + 1
    keys = ("top1", "top5") if all(r.top5 is not None for r in results) else ("top1",)
    for key in keys:
        for group, (mean, std) in group_mean_std(results, key).items():
            if sizes.get(group, 0) >= 2:
                out[f"{group}/{key}_mean"] = mean
                out[f"{group}/{key}_std"] = std
    for group, entry in base_novel_summary(results, "top1").items():
        out[f"{group}/base"] = entry["base"]
        out[f"{group}/novel"] = entry["novel"]
        out[f"{group}/hm"] = entry["hm"]
    return out


def format_table(stage: str, results: Sequence[EvalSetResult], summary: Mapping[str, float]) -> str:
    """One plain-text table of a whole evaluation stage: a row per set (top-1, top-5 in %, videos,
    skipped), then the protocol summaries."""
    width = max([len(r.name) for r in results] + [len(k) for k in summary] + [12])
    lines = [f"{stage} results", f"{'set':<{width}}  {'top1':>7}  {'top5':>7}  {'videos':>7}  {'skipped':>7}"]
    for r in results:
        top5 = f"{100 * r.top5:7.2f}" if r.top5 is not None and not math.isnan(r.top5) else f"{'-':>7}"
        lines.append(f"{r.name:<{width}}  {100 * r.top1:7.2f}  {top5}  {r.videos:>7d}  {r.skipped:>7d}")
    for key, value in summary.items():
        lines.append(f"{key:<{width}}  {100 * value:7.2f}")
    row = zero_shot_row(summary)
    if row:
        lines.append(f"zero-shot top-1 (mean ± std over splits): {row}")
    return "\n".join(lines)


def zero_shot_row(summary: Mapping[str, float]) -> str:
    """The paper's zero-shot row from the group summaries: ``hmdb51 54.20 ± 0.51 | ucf101 ...`` (in %);
    empty when no group has a mean."""
    groups = [k[: -len("/top1_mean")] for k in summary if k.endswith("/top1_mean")]
    return " | ".join(
        f"{g} {100 * summary[f'{g}/top1_mean']:.2f} ± {100 * summary.get(f'{g}/top1_std', float('nan')):.2f}"
        for g in groups
    )
