"""Lightning integration: the LightningModule, its metrics, schedule, mixing, protocol summaries and the
callbacks of a fit run (validation at the end, base-to-novel at the best-base epoch, summary)."""

from tc_clip.lightning.callbacks import FitSummary, NovelAtBestBase, ValidateAtFitEnd
from tc_clip.lightning.metrics import EvalSetAccuracy, aggregate_views
from tc_clip.lightning.mixing import VideoMixup, smooth_one_hot, soft_target_cross_entropy
from tc_clip.lightning.module import TCCLIPModule
from tc_clip.lightning.schedule import (
    WarmupCosineFactor,
    release_cosine_lr,
    scheduled_lr,
    warmup_cosine_lr,
    warmup_cosine_scheduler,
)
from tc_clip.lightning.summary import (
    EvalSetResult,
    base_novel_summary,
    few_shot_average,
    group_mean_std,
    harmonic_mean,
    mean_std,
    summarize,
)

__all__ = [
    "EvalSetAccuracy",
    "EvalSetResult",
    "FitSummary",
    "NovelAtBestBase",
    "TCCLIPModule",
    "ValidateAtFitEnd",
    "VideoMixup",
    "WarmupCosineFactor",
    "aggregate_views",
    "base_novel_summary",
    "few_shot_average",
    "group_mean_std",
    "harmonic_mean",
    "mean_std",
    "release_cosine_lr",
    "scheduled_lr",
    "smooth_one_hot",
    "soft_target_cross_entropy",
    "summarize",
    "warmup_cosine_lr",
    "warmup_cosine_scheduler",
]
