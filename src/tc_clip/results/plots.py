"""The report's plots (PNG, matplotlib's Agg backend through ``Figure``: no pyplot, the session's backend is
left alone): the WiSE-FT trade-off (:func:`plot_tradeoff`) and few-shot accuracy against K
(:func:`plot_few_shot`)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from tc_clip.results.sweeps import TradeoffPoint
from tc_clip.results.tables import Table


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
    from matplotlib.figure import Figure

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
