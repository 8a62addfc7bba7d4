"""Scan a dataset before training: missing, unreadable or too-short videos and label problems.

From the command line: ``tc-clip check-data --config config.yaml [--data.* ...] [--stages fit validate]``
(the options of ``tc-clip fit``; exit code 0 when everything is fine, 1 when any problem was found).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

from tc_clip.data.datamodule import VideoDataModule
from tc_clip.data.decoding import VideoDecodeError, probe, read_frames
from tc_clip.data.loaders import resolve_workers
from tc_clip.data.suite import ZeroShotSuiteDataModule
from tc_clip.data.transforms import eval_indices

__all__ = ["CheckReport", "check_data", "run_checks"]

STAGES = ("fit", "validate", "test")


@dataclass
class CheckReport:
    checked: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)  # (path, where)
    unreadable: list[tuple[str, str, str]] = field(default_factory=list)  # (path, where, error)
    too_short: list[tuple[str, str, int]] = field(default_factory=list)  # (path, where, frames)
    label_problems: list[str] = field(default_factory=list)
    stages: dict[str, int] = field(default_factory=dict)  # stage -> number of videos
    notes: list[str] = field(default_factory=list)  # listed videos found elsewhere by name, or nowhere

    @property
    def num_problems(self) -> int:
        return len(self.missing) + len(self.unreadable) + len(self.too_short) + len(self.label_problems)

    @property
    def ok(self) -> bool:
        return self.num_problems == 0

    def format(self, limit: int = 50) -> str:
        lines = [f"checked {self.checked} videos ({', '.join(f'{k}: {v}' for k, v in self.stages.items())})"]
        lines += [f"layout: {n}" for n in self.notes]

        def section(title, rows, fmt):
            if rows:
                lines.append(f"{title}: {len(rows)}")
                lines.extend("  " + fmt(r) for r in rows[:limit])
                if len(rows) > limit:
                    lines.append(f"  ... and {len(rows) - limit} more")

        section("label problems", self.label_problems, str)
        section("missing videos", self.missing, lambda r: f"{r[0]}  ({r[1]})")
        section("unreadable videos", self.unreadable, lambda r: f"{r[0]}  ({r[1]}): {r[2]}")
        section("too short videos", self.too_short, lambda r: f"{r[0]}  ({r[1]}): {r[2]} frames")
        lines.append("OK" if self.ok else f"{self.num_problems} problems")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


class _Probe(Dataset):
    def __init__(self, paths: list[str], num_frames: int):
        self.paths, self.num_frames = paths, num_frames

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        path = self.paths[i]
        try:
            n = probe(path).num_frames
            # decode the centred frames: catches broken streams that still demux
            read_frames(path, lambda n: eval_indices(n, self.num_frames), short_side=64)
            return path, "ok", n
        except FileNotFoundError:
            return path, "missing", 0
        except (VideoDecodeError, OSError) as e:
            return path, "unreadable", str(e)


def _parts(datamodule, stage: str) -> list[VideoDataModule]:
    """The list-reading modules behind ``datamodule`` for ``stage`` (a suite's members: evaluation only)."""
    if not isinstance(datamodule, ZeroShotSuiteDataModule):
        return [datamodule]
    return [] if stage == "fit" else list(datamodule.members.values())


def check_data(datamodule, stages: Sequence[str] = STAGES, num_workers: int | str | None = None) -> CheckReport:
    """Check every video of ``stages`` of a :class:`~tc_clip.data.VideoDataModule` (or of the members of
    a :class:`~tc_clip.data.ZeroShotSuiteDataModule`); returns a :class:`CheckReport`."""
    report = CheckReport()
    where: dict[str, str] = {}
    order: list[str] = []
    try:
        if hasattr(datamodule, "prepare_data"):
            datamodule.prepare_data()
    except (OSError, ValueError) as e:
        report.label_problems.append(str(e))
        return report
    for stage in stages:
        for part in _parts(datamodule, stage):
            errors: list[str] = []
            try:
                splits = part.resolve(stage, errors)
            except (ValueError, OSError, KeyError) as e:
                report.label_problems += errors + [f"{stage}: {e}"]
                continue
            report.label_problems += [m for m in errors if m not in report.label_problems]
            report.notes += [n for n in getattr(part, "layout_notes", []) if n not in report.notes]
            samples = [s for split in splits for s in split.samples]
            report.stages[stage] = report.stages.get(stage, 0) + len(samples)
            for s in samples:
                if s.path not in where:
                    where[s.path] = s.where
                    order.append(s.path)
    num_frames = int(getattr(datamodule, "num_frames", 1))
    workers = resolve_workers(datamodule.num_workers if num_workers is None else num_workers)
    loader = DataLoader(
        _Probe(order, num_frames),
        batch_size=None,
        num_workers=min(workers, len(order)),
        collate_fn=lambda x: x,
    )
    torch_threads = torch.get_num_threads()
    try:
        for path, status, info in loader:
            report.checked += 1
            if status == "missing":
                report.missing.append((path, where[path]))
            elif status == "unreadable":
                report.unreadable.append((path, where[path], info))
            elif info < num_frames:
                report.too_short.append((path, where[path], info))
    finally:
        torch.set_num_threads(torch_threads)
    return report


def run_checks(datamodule, stages: str | Sequence[str] | None = None) -> CheckReport:
    """What ``tc-clip check-data`` runs on a data module built from the same ``--config`` / ``--data.*``
    as ``fit``: every video and label of ``stages`` (comma-separated text or a sequence; default fit,
    validate and test). The report has ``.ok`` and a readable ``str()``; list lines are never comments,
    so every video of a list is checked (HMDB-51 names begin with ``#``)."""
    if stages is None:
        stages = STAGES
    elif isinstance(stages, str):
        stages = [s.strip() for s in stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; choose from {list(STAGES)}")
    return check_data(datamodule, stages)

