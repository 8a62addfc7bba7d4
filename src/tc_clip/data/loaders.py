"""The one loader factory: a clip dataset's DataLoader, from its files or from packed shards.

:func:`make_loader` is all a data module needs to hand Lightning a loader. From files, training gets
the :class:`~tc_clip.data.sampler.ResumableSampler` (an exact mid-epoch resume) and seeded items;
with ``shards_dir`` the set's litdata shards are streamed when it was packed there
(:mod:`tc_clip.data.shards`, an optional extra imported only then). The options are a plain
:class:`LoaderOptions`, so neither the loaders nor the shards depend on the data module.
``num_workers: auto`` (:func:`resolve_workers`) sizes the workers to the machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import DataLoader

from tc_clip.data.dataset import VideoClipDataset, worker_init_fn
from tc_clip.data.sampler import ResumableSampler, SeededDataset

__all__ = ["MAX_AUTO_WORKERS", "LoaderOptions", "Workers", "auto_workers", "make_loader", "resolve_workers"]

#: ``num_workers``: a count, or ``"auto"`` (:func:`auto_workers`)
Workers = int | Literal["auto"]
#: the most loader workers ``"auto"`` gives one process (the paper's configs used 8)
MAX_AUTO_WORKERS = 8


def _cpus() -> int:
    """The CPUs this process may run on (its affinity, which a batch scheduler sets), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def auto_workers(processes: int | None = None) -> int:
    """Loader workers for one process: its CPUs shared among the processes on this node
    (``LOCAL_WORLD_SIZE`` where torchrun sets it, else ``processes``, e.g. the trainer's devices, else
    1), at most :data:`MAX_AUTO_WORKERS`; 0 (load in the main process) with more processes than CPUs."""
    processes = int(os.environ.get("LOCAL_WORLD_SIZE") or processes or 1)
    return min(MAX_AUTO_WORKERS, _cpus() // max(1, processes))


def resolve_workers(value: Workers, processes: int | None = None) -> int:
    """``num_workers`` as a count: an int as given, ``"auto"`` by :func:`auto_workers`."""
    if value == "auto":
        return auto_workers(processes)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"num_workers must be a count >= 0 or 'auto', got {value!r}")
    return value


@dataclass(frozen=True)
class LoaderOptions:
    """How loaders batch and read: the data module's ``batch_size`` / ``eval_batch_size`` (training /
    evaluation), worker and memory options, the ``seed`` of the training order, and ``shards_dir``."""

    batch_size: int
    eval_batch_size: int
    num_workers: int
    pin_memory: bool = True
    persistent_workers: bool = True
    seed: int = 0
    shards_dir: str | None = None

    def batch(self, train: bool) -> int:
        return self.batch_size if train else self.eval_batch_size

    @property
    def pin(self) -> bool:
        """Pinned memory only where there is a GPU to copy to."""
        return self.pin_memory and torch.cuda.is_available()

    @property
    def persistent(self) -> bool:
        return self.persistent_workers and self.num_workers > 0


def make_loader(dataset: VideoClipDataset, train: bool, options: LoaderOptions) -> DataLoader:
    """The loader of ``dataset``: streamed from ``options.shards_dir`` where the set was packed there
    (training data must be), else from its files. Training shuffles reproducibly (seeded by
    ``options.seed``) and drops a last partial batch when there is a full one."""
    drop_last = train and len(dataset) >= options.batch_size
    if options.shards_dir:  # litdata shards written by `tc-clip pack`
        from tc_clip.data import shards

        streamed = shards.streaming_loader(
            options.shards_dir, dataset, train,
            batch_size=options.batch(train), num_workers=options.num_workers, pin_memory=options.pin,
            persistent_workers=options.persistent, drop_last=drop_last, seed=options.seed,
        )
        if streamed is not None:
            return streamed
    generator = torch.Generator()
    generator.manual_seed(options.seed)
    return DataLoader(
        SeededDataset(dataset) if train else dataset,
        batch_size=options.batch(train),
        sampler=ResumableSampler(dataset, seed=options.seed) if train else None,  # exact resume
        drop_last=drop_last,
        num_workers=options.num_workers,
        pin_memory=options.pin,
        persistent_workers=options.persistent,
        worker_init_fn=worker_init_fn,
        generator=generator,
    )
