"""Training order and randomness that a resumed run reproduces exactly.

Every random draw of training is a function of (seed, epoch, position): :class:`ResumableSampler`
shuffles with a generator seeded from (seed, epoch) and hands out :class:`SeededIndex` values that carry a
per-sample seed derived from (seed, epoch, index); :class:`SeededDataset` loads each sample under that seed
(crop, flip, jitter, frame choice), whatever worker, worker count or process loads it; :func:`step_rng`
does the same for per-batch draws (Mixup/CutMix) keyed by (epoch, batch index). The sampler's position (samples
consumed in the current epoch) is saved and restored by :class:`tc_clip.callbacks.SamplerResume`.
"""

from __future__ import annotations

import math
import os
import random
import zlib
from collections.abc import Iterator, Sized
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

__all__ = ["ResumableSampler", "SeededDataset", "SeededIndex", "derive_seed", "seeded_rng", "step_rng"]


def derive_seed(*keys: int | str) -> int:
    """A 32-bit seed from integers and strings, well mixed (NumPy's ``SeedSequence``)."""
    words = [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return int(np.random.SeedSequence([abs(w) for w in words]).generate_state(1)[0])


class SeededIndex(int):
    """A dataset index that carries the seed of the random draws made while loading it."""

    seed: int

    def __new__(cls, index: int, seed: int) -> SeededIndex:
        obj = super().__new__(cls, index)
        obj.seed = seed
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return SeededIndex, (int(self), self.seed)


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Run the block with Python's, NumPy's and torch's (CPU) global RNGs seeded by ``seed``; their previous
    states are restored afterwards, so nothing outside the block sees a difference."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def step_rng(epoch: int, batch_idx: int, stream: str = "mixup") -> AbstractContextManager[None]:
    """:func:`seeded_rng` keyed by (``seed_everything`` seed, ``stream``, epoch, batch): per-batch draws
    that a resumed run repeats."""
    base = int(os.environ.get("PL_GLOBAL_SEED", "0"))
    return seeded_rng(derive_seed(base, stream, int(epoch), int(batch_idx)))


class SeededDataset(Dataset):
    """Loads ``dataset[i]`` under the seed a :class:`SeededIndex` carries (plain indices: unchanged)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        seed = getattr(index, "seed", None)
        if seed is None:
            return self.dataset[index]
        with seeded_rng(seed):
            return self.dataset[int(index)]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not yet set (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


class ResumableSampler(DistributedSampler):
    """Epoch-seeded permutation, split over the processes like ``DistributedSampler`` (padded to equal
    length, or ``drop_last``), that can start an epoch after its first ``consumed`` samples.

    ``num_replicas``/``rank`` default to the initialised process group (else one process), read when
    iterating. ``state_dict(consumed=n)`` records the epoch and the samples consumed *by all processes*;
    after ``load_state_dict`` the first iteration of that epoch skips them (a different process count
    resumes at the same place of the permutation). Lightning calls ``set_epoch`` before every epoch.
    """

    def __init__(
        self,
        dataset: Sized,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        # no super().__init__(): it requires an initialised process group
        self.dataset = dataset
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.epoch = 0
        self._replicas = num_replicas
        self._rank = rank
        self._skip: tuple[int, int] | None = None  # (epoch, samples consumed by all processes)
        self._yielded = 0

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        if self._replicas is not None:
            return self._replicas
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @num_replicas.setter
    def num_replicas(self, value: int) -> None:
        self._replicas = value

    @property
    def rank(self) -> int:  # type: ignore[override]
        if self._rank is not None:
            return self._rank
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    @rank.setter
    def rank(self, value: int) -> None:
        self._rank = value

    @property
    def num_samples(self) -> int:  # type: ignore[override]
        n, r = len(self.dataset), self.num_replicas
        return n // r if self.drop_last else math.ceil(n / r)

    @num_samples.setter
    def num_samples(self, value: int) -> None:
        pass  # derived

    @property
    def total_size(self) -> int:  # type: ignore[override]
        return self.num_samples * self.num_replicas

    @total_size.setter
    def total_size(self, value: int) -> None:
        pass  # derived

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int) -> list[int]:
        """The global order of ``epoch`` (before the split over processes)."""
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, "order", epoch))
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        total = self.total_size
        if total > n:
            order += (order * math.ceil(total / n))[: total - n]
        return order[:total]

    def __iter__(self) -> Iterator[SeededIndex]:
        epoch, replicas = self.epoch, self.num_replicas
        mine = self.order(epoch)[self.rank : self.total_size : replicas]
        start = 0
        if self._skip is not None and self._skip[0] == epoch:
            start = min(self._skip[1] // replicas, len(mine))
        self._yielded = start
        for i in mine[start:]:
            self._yielded += 1
            yield SeededIndex(i, derive_seed(self.seed, "sample", epoch, i))

    def state_dict(self, consumed: int | None = None) -> dict[str, int]:
        """``consumed``: samples this process has trained on in the current epoch (default: how many the
        sampler handed out, which overcounts when a loader reads ahead)."""
        per_process = self._yielded if consumed is None else int(consumed)
        return {"seed": self.seed, "epoch": self.epoch, "consumed": per_process * self.num_replicas}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(
                f"the checkpoint's training order used data seed {state['seed']}, this run uses {self.seed}: "
                "resume with the same --data.seed"
            )
        self._skip = (int(state["epoch"]), int(state["consumed"]))
