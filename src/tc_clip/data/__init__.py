"""Video data for TC-CLIP: LightningDataModules for the benchmarks and for any list of videos, fast
PyAV decoding, TSN sampling and the release's transforms, a synthetic dataset and a data checker."""

from tc_clip.data.annotations import Sample
from tc_clip.data.datamodule import (
    EvalSetInfo,
    HMDB51DataModule,
    Kinetics400DataModule,
    Kinetics600DataModule,
    SSv2DataModule,
    SyntheticVideoDataModule,
    UCF101DataModule,
    VideoDataModule,
    ZeroShotSuiteDataModule,
)
from tc_clip.data.dataset import BadVideoWarning, VideoClipDataset
from tc_clip.data.decoding import VideoDecodeError, read_frames

__all__ = [
    "BadVideoWarning",
    "EvalSetInfo",
    "HMDB51DataModule",
    "Kinetics400DataModule",
    "Kinetics600DataModule",
    "SSv2DataModule",
    "Sample",
    "SyntheticVideoDataModule",
    "UCF101DataModule",
    "VideoClipDataset",
    "VideoDataModule",
    "VideoDecodeError",
    "read_frames",
    "ZeroShotSuiteDataModule",
]
