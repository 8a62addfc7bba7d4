"""ZeroShotSuiteDataModule: the paper's zero-shot suite (HMDB-51, UCF-101, K-600, three splits each) in one run.

The suite owns no data: it hands its clip and loader options to its member benchmark modules and
concatenates their evaluation sets and loaders, renamed and checked like one module's
(:func:`tc_clip.data.protocols.rename_sets`).
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import lightning as L
from torch.utils.data import DataLoader

from tc_clip.data.benchmarks import HMDB51DataModule, Kinetics600DataModule, UCF101DataModule
from tc_clip.data.datamodule import VideoDataModule
from tc_clip.data.gpu_augment import device_transform
from tc_clip.data.protocols import rename_sets
from tc_clip.data.splits import EvalSetInfo

__all__ = ["ZeroShotSuiteDataModule"]

_SUITE_SHARED = ("num_frames", "input_size", "batch_size", "eval_batch_size", "num_workers", "test_views",
                 "test_crops", "val_views", "val_crops")


class ZeroShotSuiteDataModule(L.LightningDataModule):
    """The paper's zero-shot suite in one evaluation run: HMDB-51 (3 splits), UCF-101 (3 splits) and
    K-600 (3 splits of 160 classes new to K-400), each a zero-shot member module.

    ``eval_sets(stage)`` and the validation/test dataloaders are those of ``hmdb51``, ``ucf101`` and
    ``k600`` in that order (members left ``None`` are skipped): ``hmdb51/split1..3``, ``ucf101/split1..3``,
    ``k600/split1..3``, grouped per benchmark for mean +- std. ``eval_names`` renames the concatenated
    sets. The clip and loader options (``num_frames``, ``input_size``, ``batch_size``, views, crops,
    ``num_workers``) are the suite's and are handed to every member; a member that sets one of them to
    another value is an error. Members run with ``protocol="zero_shot"``. Evaluation only: there is no
    training data (zero-shot training is :class:`Kinetics400DataModule`)."""

    def __init__(
        self,
        hmdb51: HMDB51DataModule | None = None,
        ucf101: UCF101DataModule | None = None,
        k600: Kinetics600DataModule | None = None,
        eval_names: list[str] | None = None,
        num_frames: int = 16,
        input_size: int = 224,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int | Literal["auto"] = "auto",
        val_views: int = 2,
        val_crops: int = 1,
        test_views: int = 2,
        test_crops: int = 1,
    ):
        super().__init__()
        self.members: dict[str, VideoDataModule] = {
            k: m for k, m in (("hmdb51", hmdb51), ("ucf101", ucf101), ("k600", k600)) if m is not None
        }
        if not self.members:
            raise ValueError("ZeroShotSuiteDataModule: give at least one of hmdb51, ucf101, k600")
        self.eval_names = list(eval_names) if eval_names is not None else None
        self.num_frames, self.input_size = num_frames, input_size
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers = num_workers
        self.val_views, self.val_crops = val_views, val_crops
        self.test_views, self.test_crops = test_views, test_crops
        defaults = inspect.signature(VideoDataModule.__init__).parameters
        for key, member in self.members.items():
            if member.protocol not in ("zero_shot", "fully_supervised"):
                raise ValueError(f"{key}.protocol is {member.protocol!r}; the zero-shot suite evaluates zero-shot")
            member.protocol = "zero_shot"
            member.option_prefix = f"data.{key}."  # its errors name the suite's options
            given = {opt: getattr(member, opt) for opt in _SUITE_SHARED}
            for opt in _SUITE_SHARED:
                mine, suite = given[opt], getattr(self, opt)
                default = given["batch_size"] if opt == "eval_batch_size" else defaults[opt].default
                if mine not in (default, suite):
                    raise ValueError(f"{key}.{opt}={mine} contradicts the suite's {opt}={suite}; set it on the suite")
                setattr(member, opt, suite)

    def prepare_data(self) -> None:
        for m in self.members.values():
            m.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        for m in self.members.values():
            m.trainer = self.trainer  # the members size their loaders (num_workers: auto) to its processes
            m.setup(stage)

    def eval_sets(self, stage: str) -> list[EvalSetInfo]:
        """The members' evaluation sets of ``stage``, concatenated (renamed by ``eval_names``)."""
        if stage == "predict":
            return []
        sets = [info for m in self.members.values() for info in m.eval_sets(stage)]
        return rename_sets(sets, self.eval_names, stage, type(self).__name__, f"the suite's {stage} stage")

    def deferred_sets(self) -> list[EvalSetInfo]:
        """The members' deferred novel sets: none, zero-shot sets have no role (asked of any data module)."""
        return [info for m in self.members.values() for info in m.deferred_sets()]

    @property
    def train_class_names(self) -> list[str]:
        """No training data: the class names of the first evaluation set."""
        return next(iter(self.members.values())).train_class_names

    def describe(self) -> dict:
        return {
            "protocol": "zero_shot",
            "benchmark": None,
            "benchmarks": list(self.members),
            "shot": None,
            "seed": None,
            "train_list": None,
            "train_source": None,
        }

    def val_dataloader(self) -> list[DataLoader]:
        return [dl for m in self.members.values() for dl in m.val_dataloader()]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The members hand over ``uint8`` clips: normalised on the device, as in :class:`VideoDataModule`."""
        return device_transform(batch)

    def test_dataloader(self) -> list[DataLoader]:
        return [dl for m in self.members.values() for dl in m.test_dataloader()]
