"""Run results on disk and what is made of them, without torch: evaluation records
(:mod:`~tc_clip.results.records`), protocol summaries (:mod:`~tc_clip.results.summary`), WiSE-FT sweep
files (:mod:`~tc_clip.results.sweeps`), run folders (:mod:`~tc_clip.results.runs`), the paper's tables
and plots (:mod:`~tc_clip.results.tables`, :mod:`~tc_clip.results.plots`) and the whole report
(:mod:`~tc_clip.results.report`; its command line is ``tc-clip report``)."""

from typing import Any

from tc_clip._deprecation import moved, warn_moved
from tc_clip.results.plots import plot_few_shot, plot_tradeoff
from tc_clip.results.records import (
    EVAL_RESULTS_FILE,
    RECORD_KEYS,
    SET_KEYS,
    STAGE_PREFIX,
    EvalSetResult,
    append_eval_record,
    eval_record,
    read_eval_records,
)
from tc_clip.results.report import wise_section, write_report
from tc_clip.results.runs import (
    CONFIG_FILE,
    ReportError,
    RunResult,
    find_runs,
    load_run,
    monitored_metric,
    read_run_config,
    record_metric,
    select_record,
)
from tc_clip.results.summary import (
    base_novel_summary,
    few_shot_average,
    format_table,
    group_mean_std,
    harmonic_mean,
    mean_std,
    primary_top1,
    summarize,
    zero_shot_row,
)
from tc_clip.results.sweeps import (
    CSV_FIELDS,
    TradeoffPoint,
    ZeroShotSpec,
    check_targets,
    default_targets,
    known_names,
    read_points_csv,
    read_sweep_csv,
    tradeoff_points,
    write_sweep_csv,
    write_sweep_json,
)
from tc_clip.results.tables import (
    BENCHMARK_ORDER,
    PROTOCOL_TITLES,
    MeanStd,
    Table,
    base_to_novel_table,
    few_shot_tables,
    per_set_table,
    report_tables,
    table_markdown,
    wise_table,
    write_table_csv,
    zero_shot_table,
)

__all__ = [
    "BENCHMARK_ORDER", "CONFIG_FILE", "CSV_FIELDS", "EVAL_RESULTS_FILE", "PROTOCOL_TITLES", "RECORD_KEYS",
    "SET_KEYS", "STAGE_PREFIX", "EvalSetResult", "MeanStd", "ReportError", "RunResult", "Table", "TradeoffPoint",
    "ZeroShotSpec", "append_eval_record", "base_novel_summary", "base_to_novel_table", "check_targets",
    "default_targets", "eval_record", "few_shot_average", "few_shot_tables", "find_runs", "format_table",
    "group_mean_std", "harmonic_mean", "known_names", "load_run", "mean_std", "monitored_metric",
    "per_set_table", "plot_few_shot", "plot_tradeoff", "primary_top1", "read_eval_records", "read_points_csv",
    "read_run_config", "read_sweep_csv", "record_metric", "report_tables", "select_record", "summarize",
    "table_markdown", "tradeoff_points", "wise_section", "wise_table", "write_report", "write_sweep_csv",
    "write_sweep_json", "write_table_csv", "zero_shot_row", "zero_shot_table",
]

_moved_away, __dir__ = moved(__name__, {"report_main": "tc_clip.cli.report:main"})


def _set_result(alpha: float, eval_set: str, top1: float, top5: float, videos: int, skipped: int,
                group: str | None = None, role: str | None = None, stage: str = "test") -> EvalSetResult:
    """The former sweep row ``SetResult(alpha, eval_set, ...)``, now an :class:`EvalSetResult`."""
    return EvalSetResult(eval_set, top1, top5, group, role, videos, skipped, alpha, stage)


def __getattr__(name: str) -> Any:
    if name == "SetResult":
        warn_moved("tc_clip.results.SetResult", "tc_clip.results.EvalSetResult (eval_set is now name)")
        return _set_result
    return _moved_away(name)
