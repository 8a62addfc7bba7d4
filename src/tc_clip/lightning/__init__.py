"""Lightning integration: the LightningModule (:class:`TCCLIPModule`), its metrics and the one video score,
schedule and mixing, and the evaluation loop used outside a Trainer (:mod:`~tc_clip.lightning.evaluation`).
The callbacks are in :mod:`tc_clip.callbacks`, the summaries in :mod:`tc_clip.results`."""

from tc_clip._deprecation import moved
from tc_clip.lightning.metrics import EvalSetAccuracy, aggregate_views, video_scores
from tc_clip.lightning.mixing import VideoMixup, smooth_one_hot, soft_target_cross_entropy
from tc_clip.lightning.module import TCCLIPModule
from tc_clip.lightning.schedule import (
    WarmupCosineFactor,
    release_cosine_lr,
    scheduled_lr,
    warmup_cosine_lr,
    warmup_cosine_scheduler,
)

__all__ = [
    "EvalSetAccuracy",
    "TCCLIPModule",
    "VideoMixup",
    "WarmupCosineFactor",
    "aggregate_views",
    "release_cosine_lr",
    "scheduled_lr",
    "smooth_one_hot",
    "soft_target_cross_entropy",
    "video_scores",
    "warmup_cosine_lr",
    "warmup_cosine_scheduler",
]

__getattr__, __dir__ = moved(__name__, {
    "FitSummary": "tc_clip.callbacks.fit_summary",
    "NovelAtBestBase": "tc_clip.callbacks.novel_at_best_base",
    "ValidateAtFitEnd": "tc_clip.callbacks.validate_at_fit_end",
    "EvalSetResult": "tc_clip.results.records",
    **{name: "tc_clip.results.summary" for name in (
        "base_novel_summary", "few_shot_average", "group_mean_std", "harmonic_mean", "mean_std", "summarize",
    )},
})
