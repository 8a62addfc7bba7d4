"""Video data for TC-CLIP: LightningDataModules for the benchmarks and for any list of videos.

The rooms, from the ground up: :mod:`~tc_clip.data.annotations` (list, label and benchmark annotation
files), :mod:`~tc_clip.data.splits` (the shapes: SplitData, EvalSetInfo, TrainInfo),
:mod:`~tc_clip.data.protocols` (few-shot, base-to-novel, set names), :mod:`~tc_clip.data.lists`
(generic lists into splits), :mod:`~tc_clip.data.decoding` (PyAV and torchcodec, one dispatcher),
:mod:`~tc_clip.data.transforms` / :mod:`~tc_clip.data.gpu_augment` (sampling and augmentation),
:mod:`~tc_clip.data.dataset` (clips), :mod:`~tc_clip.data.sampler` (resumable order),
:mod:`~tc_clip.data.shards` and :mod:`~tc_clip.data.loaders` (one loader factory, files or shards),
:mod:`~tc_clip.data.datamodule` (VideoDataModule), :mod:`~tc_clip.data.benchmarks` (the benchmarks'
layouts), :mod:`~tc_clip.data.suite` (the zero-shot suite); :mod:`~tc_clip.data.synthetic` and
:mod:`~tc_clip.data.check` on the side; :mod:`~tc_clip.data.errors` the errors a user can fix.
"""

from tc_clip.data.annotations import Sample
from tc_clip.data.benchmarks import (
    HMDB51DataModule,
    Kinetics400DataModule,
    Kinetics600DataModule,
    SSv2DataModule,
    SyntheticVideoDataModule,
    UCF101DataModule,
)
from tc_clip.data.datamodule import VideoDataModule
from tc_clip.data.dataset import BadVideoWarning, VideoClipDataset
from tc_clip.data.decoding import VideoDecodeError, read_frames
from tc_clip.data.errors import DataError
from tc_clip.data.splits import EvalSetInfo
from tc_clip.data.suite import ZeroShotSuiteDataModule

__all__ = [
    "BadVideoWarning",
    "DataError",
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
