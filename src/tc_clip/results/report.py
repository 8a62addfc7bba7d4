"""The whole report of ``tc-clip report``: tables from run folders, the WiSE-FT section from sweep CSVs,
written as ``report.md``, one CSV per table and the plots (the command line is :mod:`tc_clip.cli.report`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tc_clip.results.plots import plot_few_shot, plot_tradeoff
from tc_clip.results.runs import ReportError, find_runs, load_run
from tc_clip.results.sweeps import (
    ZeroShotSpec,
    check_targets,
    default_targets,
    no_finetune_set,
    read_points_csv,
    read_sweep_csv,
    tradeoff_points,
    write_sweep_csv,
    write_sweep_json,
)
from tc_clip.results.tables import Table, report_tables, table_markdown, wise_table, write_table_csv

WISE_TITLE = "Weight-space ensembling (WiSE-FT) top-1 (%)"
INTRO = ("Accuracies in %. A run reports its last test record, else the validation record of the epoch its "
         "checkpoint selection kept (best `checkpoint.monitor`); the `record` column says which.")


def wise_section(
    sweeps: Sequence[Path], out: Path, finetune_set: str | None = None, zero_shot_sets: ZeroShotSpec = None,
    baselines: Sequence[str] = (), label: str = "TC-CLIP",
) -> tuple[Table | None, list[str]]:
    """The sweep CSVs combined: ``wise_sweep.{csv,json}`` in ``out`` and, when the sweeps hold a trade-off
    point, the plot (``baselines``: ``"LABEL=CSV"`` drawn on the same axes) and its table. Returns
    ``(table or None, names of the files written)``; without a fine-tuning set the table has no rows and
    its note says why no plot is drawn."""
    rows = [r for path in sweeps for r in read_sweep_csv(path)]
    if len({(r.alpha, r.name) for r in rows}) != len(rows):
        raise ReportError(f"the sweep CSV files hold the same (alpha, eval_set) twice: {[str(p) for p in sweeps]}")
    available = {r.name for r in rows} | {r.group for r in rows if r.group}
    check_targets(finetune_set, zero_shot_sets, available)
    points = tradeoff_points(rows, finetune_set, zero_shot_sets)
    write_sweep_csv(out / "wise_sweep.csv", rows)
    write_sweep_json(out / "wise_sweep.json", rows, finetune_set, zero_shot_sets)
    files = ["wise_sweep.csv", "wise_sweep.json"]
    ft = str(finetune_set or default_targets(rows)[0])
    if not points:
        why = None if finetune_set else no_finetune_set(rows)
        if why is None:
            return None, files
        return Table("wise_tradeoff", WISE_TITLE, [], notes=[why[0].upper() + why[1:] + "."]), files
    others = {}
    for spec in baselines:
        name, _, path = spec.rpartition("=")
        others[name or Path(path).stem] = read_points_csv(path, finetune_set, zero_shot_sets)
    plot_tradeoff(points, out / "wise_tradeoff.png", label=label, baselines=others, finetune_label=ft)
    return wise_table(points, ft), [*files, "wise_tradeoff.png"]


def write_report(
    paths: Sequence[str | os.PathLike], output: str | os.PathLike, finetune_set: str | None = None,
    zero_shot_sets: ZeroShotSpec = None, baselines: Sequence[str] = (), label: str = "TC-CLIP",
) -> tuple[str, list[Path]]:
    """The paper's tables from run folders (and sweep CSVs) in ``paths``, written into ``output``: the
    Markdown text and the files written. :class:`ReportError` (or ``ValueError`` / ``OSError``) names what
    cannot be reported."""
    out = Path(output)
    found, sweeps = find_runs(paths)
    tables = report_tables([load_run(path, name) for name, path in found])
    files: list[str] = []
    wise = None
    if sweeps:
        wise, files = wise_section(sweeps, out, finetune_set, zero_shot_sets, baselines, label)
    if not tables and wise is None:
        raise ReportError("nothing to report (no records, no sweep with a trade-off point)")
    if wise is not None:
        tables.append(wise)
    parts = ["# Results", "", INTRO]
    for table in tables:
        if not table.columns:  # nothing to table, only why (the WiSE-FT plot without a fine-tuning set)
            parts += ["", f"## {table.title}", "", *table.notes]
            continue
        files.append(write_table_csv(table, out / f"{table.key}.csv").name)
        parts += ["", f"## {table.title}", "", table_markdown(table)]
        if table.key == "few_shot" and any(c.startswith("K=") for c in table.columns):
            files.append(Path(plot_few_shot(table, out / "few_shot.png")).name)
            parts += ["", "![few-shot top-1 against K](few_shot.png)"]
        if table.key == "wise_tradeoff":
            parts += ["", "![WiSE-FT trade-off](wise_tradeoff.png)"]
    text = "\n".join(parts) + "\n"
    (out / "report.md").write_text(text, encoding="utf-8")
    return text, [out / f for f in ["report.md", *files]]
