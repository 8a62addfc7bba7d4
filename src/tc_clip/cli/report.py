"""``tc-clip report RUN...``: the paper's tables from finished runs (:func:`tc_clip.results.report.write_report`),
as Markdown (printed, and ``<output>/report.md``), one CSV per table and plots."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tc_clip.results.report import write_report
from tc_clip.results.runs import ReportError


def parser() -> argparse.ArgumentParser:
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


def main(argv: Sequence[str] | None = None) -> int:
    """``tc-clip report RUN...``: the paper's tables from finished runs, as Markdown (printed, and
    ``<output>/report.md``), one CSV per table and plots (few-shot accuracy against K; the WiSE-FT
    trade-off when sweep CSVs are found). Returns the exit status (2 on bad input, with the reason)."""
    args = parser().parse_args(argv)
    try:
        text, files = write_report(args.runs, args.output, args.finetune_set, args.zero_shot_sets, args.baseline,
                                   args.label)
    except (ReportError, ValueError, OSError) as err:
        print(f"tc-clip report: error: {err}", file=sys.stderr)
        return 2
    print(text)
    print(f"wrote {', '.join(str(f) for f in files)}", file=sys.stderr)
    return 0
