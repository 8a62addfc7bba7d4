"""The shapes the data layer hands around: a resolved split, an evaluation set, how training data came about.

:class:`SplitData` is what a data module resolves for a stage (samples, class names, group, role);
:class:`EvalSetInfo` is the one description of an evaluation dataloader that the layers above read
(metric names, mean ± std groups, base/novel roles); :class:`TrainInfo` says where the training list
came from (reported by ``describe()``). :class:`SplitSource` is what needs splits only (shard packing)
asks of a data module, so that it does not depend on the data module itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from tc_clip.data.annotations import Sample, subset_classes

__all__ = [
    "EVAL_STAGES",
    "PROTOCOLS",
    "STAGES",
    "EvalSetInfo",
    "ProtocolName",
    "SplitData",
    "SplitSource",
    "TrainInfo",
    "TrainSource",
]

ProtocolName = Literal["fully_supervised", "few_shot", "base_to_novel", "zero_shot"]
PROTOCOLS: tuple[str, ...] = ("fully_supervised", "few_shot", "base_to_novel", "zero_shot")
TrainSource = Literal["list_file", "seed_drawn", "dataset"]
#: every stage a data module resolves, and those with evaluation sets
STAGES: tuple[str, ...] = ("fit", "validate", "test", "predict")
EVAL_STAGES: tuple[str, ...] = ("validate", "test", "predict")


@dataclass
class EvalSetInfo:
    """One evaluation dataloader: its name, the class names to classify into, the benchmark it belongs
    to (``group``: splits of one benchmark are averaged as mean ± std in zero-shot) and its role in
    base-to-novel evaluation (``"base"`` / ``"novel"``)."""

    name: str
    class_names: list[str]
    group: str | None = None
    role: str | None = None


@dataclass
class SplitData:
    """A resolved split: samples with labels into ``class_names`` (raw names of the label file) and the
    names handed to the model (``display_names``: LLM-rephrased when given, else the raw names)."""

    name: str
    samples: list[Sample]
    class_names: list[str]
    display_names: list[str] = field(default_factory=list)
    group: str | None = None
    role: str | None = None
    number: int | None = None  # the benchmark's split number (HMDB/UCF/K-600 splits 1-3), when known

    def __post_init__(self):
        if not self.display_names:
            self.display_names = list(self.class_names)

    def subset(self, keep: list[int], name: str | None = None, role: str | None = None) -> SplitData:
        """The classes ``keep`` (ids into ``class_names``), labels remapped to positions in ``keep``."""
        return SplitData(
            name=name or self.name,
            samples=subset_classes(self.samples, keep),
            class_names=[self.class_names[i] for i in keep],
            display_names=[self.display_names[i] for i in keep],
            group=self.group,
            role=role if role is not None else self.role,
            number=self.number,
        )

    def info(self) -> EvalSetInfo:
        return EvalSetInfo(self.name, list(self.display_names), self.group, self.role)


@dataclass
class TrainInfo:
    """How the training list came about (reported by ``describe()``)."""

    source: TrainSource
    shot: int | None = None
    seed: int | None = None
    list_path: str | None = None


@runtime_checkable
class SplitSource(Protocol):
    """Anything that resolves the splits of a stage (a :class:`~tc_clip.data.VideoDataModule`)."""

    def splits(self, stage: str) -> list[SplitData]: ...
