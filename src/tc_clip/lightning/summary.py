"""Deprecated: :mod:`tc_clip.results.summary` (and :class:`tc_clip.results.EvalSetResult`)."""

from tc_clip._deprecation import moved

__getattr__, __dir__ = moved(__name__, {
    "EvalSetResult": "tc_clip.results.records",
    **{name: "tc_clip.results.summary" for name in (
        "base_novel_summary", "few_shot_average", "format_table", "group_mean_std", "harmonic_mean", "mean_std",
        "primary_top1", "summarize", "zero_shot_row",
    )},
})
