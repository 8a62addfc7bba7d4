"""Lightning integration: the LightningModule, its metrics, schedule, mixing and protocol summaries."""

from tc_clip.lightning.metrics import EvalSetAccuracy, aggregate_views
from tc_clip.lightning.mixing import VideoMixup, smooth_one_hot, soft_target_cross_entropy
from tc_clip.lightning.module import TCCLIPModule
from tc_clip.lightning.schedule import WarmupCosineFactor, warmup_cosine_lr, warmup_cosine_scheduler
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
    "TCCLIPModule",
    "VideoMixup",
    "WarmupCosineFactor",
    "aggregate_views",
    "base_novel_summary",
    "few_shot_average",
    "group_mean_std",
    "harmonic_mean",
    "mean_std",
    "smooth_one_hot",
    "soft_target_cross_entropy",
    "summarize",
    "warmup_cosine_lr",
    "warmup_cosine_scheduler",
]
