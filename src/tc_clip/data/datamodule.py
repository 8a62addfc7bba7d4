"""LightningDataModules: generic list files / class folders, and the five benchmarks' own layouts."""

from __future__ import annotations

import inspect
import logging
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from tc_clip.data import annotations as ann
from tc_clip.data.annotations import Sample
from tc_clip.data.base_novel import name_key, published_base_ids
from tc_clip.data.dataset import VideoClipDataset, worker_init_fn
from tc_clip.data.gpu_augment import device_transform
from tc_clip.data.sampler import ResumableSampler, SeededDataset

__all__ = [
    "EvalSetInfo",
    "VideoDataModule",
    "HMDB51DataModule",
    "UCF101DataModule",
    "SSv2DataModule",
    "Kinetics400DataModule",
    "Kinetics600DataModule",
    "ZeroShotSuiteDataModule",
]

log = logging.getLogger(__name__)

Protocol = Literal["fully_supervised", "few_shot", "base_to_novel", "zero_shot"]
TrainSource = Literal["list_file", "seed_drawn", "dataset"]
EVAL_STAGES = ("validate", "test", "predict")
_SEED_IN_NAME = re.compile(r"(?:^|[_\-.])s(?:eed)?_?(\d+)(?=[_\-.]|$)")


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
        return SplitData(
            name=name or self.name,
            samples=ann.subset_classes(self.samples, keep),
            class_names=[self.class_names[i] for i in keep],
            display_names=[self.display_names[i] for i in keep],
            group=self.group,
            role=role if role is not None else self.role,
            number=self.number,
        )

    def info(self) -> EvalSetInfo:
        return EvalSetInfo(self.name, list(self.display_names), self.group, self.role)


def _as_list(x) -> list:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


@dataclass
class TrainInfo:
    """How the training list came about (reported by ``describe()``)."""

    source: TrainSource
    shot: int | None = None
    seed: int | None = None
    list_path: str | None = None


class VideoDataModule(L.LightningDataModule):
    """Video clips for TC-CLIP from list files, class folders or (in the subclasses) a benchmark's own
    annotation files.

    Inputs: ``train_list`` / ``val_list`` / ``test_list`` are list files (``relative/path.ext label``
    lines, paths relative to ``root``, default the list file's folder) or folders with one sub-folder
    per class. ``val_list`` and ``test_list`` may name several lists: one dataloader (and one
    :class:`EvalSetInfo`) each. ``labels`` is the ``id,name`` CSV (required with list files);
    ``val_labels`` / ``test_labels`` give eval lists their own class lists (one file, or one per list).
    ``llm_names`` / ``eval_llm_names``: JSON ``{"0": "text"}`` replacing the names handed to the model.
    ``predict_list``: a list file, a folder of videos (searched recursively) or video paths; labels
    optional (-1). Without ``test_list`` the test stage uses the validation lists.

    Protocols (SPEC 5b: the paper's numbers come from the public list files, used as they are):

    - ``few_shot``: a K-shot list given as ``train_list`` is used as it is; K is its per-class count
      (``describe()["shot"]``). ``shot`` is then optional: more than the list holds is an error, fewer
      draws that many per class with ``seed``. Without ``train_list`` (the dataset's own training split)
      ``shot`` videos per class are drawn with ``seed``. A drawn list is a different experiment from the
      paper's: it is logged as such, reported as ``train_source="seed_drawn"`` and written to
      ``split_dir`` (default: the trainer's log dir, else ``~/.cache/tc_clip/splits``).
    - ``base_to_novel`` with the public files: ``train_list`` ``fs_base_s{1,2,3}_train.txt`` and
      ``labels`` the base-class CSV, ``val_list`` ``base_val.txt`` (base labels), ``novel_list``
      ``novel_val.txt`` with ``novel_labels`` the novel-class CSV. The evaluation sets are
      ``<benchmark>/base`` and ``<benchmark>/novel`` (roles base/novel), in validation and test.
      Without ``novel_list`` the label file holds every class: training keeps the base classes and every
      evaluation list is split into its base and novel classes (labels remapped to positions in the
      base / novel list). The base classes are ``base_classes`` (names or a file), by default the
      published split of the benchmark (:mod:`tc_clip.data.base_novel`); training on the dataset's own
      split draws ``shot`` (default 16) per base class with ``seed``.
    - ``zero_shot``: every evaluation list is a set of one group (the benchmark, or ``eval_group``) whose
      top-1 is averaged as mean +- std.

    Evaluation-set names (``eval_sets``): the benchmark modules use ``<benchmark>/split<k>`` (HMDB-51,
    UCF-101, K-600 splits), ``<benchmark>/val`` (K-400, SSv2), ``<benchmark>/base`` / ``/novel``; a
    generic list is named by its file stem. ``eval_names`` replaces them (one name per set, in order).
    ``class_subset`` (names or a file: one name a line, or a labels CSV) restricts every split to those
    classes (e.g. the temporal / static subsets), labels remapped in the given order. List-file lines are
    ``path label``; no line is a comment (HMDB-51 file names begin with ``#``).

    Clips: ``num_frames`` frames, ``input_size`` pixels; training uses TSN sampling and the release's
    augmentation (``flip`` off for SSv2); evaluation ``val_views`` / ``test_views`` temporal views times
    ``val_crops`` / ``test_crops`` (1 or 3) crops. An unreadable training video is replaced by another;
    an unreadable evaluation video is left out of the metric and counted (``skipped``); both are named
    in a warning. ``strict=True`` raises instead. ``device_augment`` (default on): workers hand over
    ``uint8`` clips and the colour augmentation and normalisation run batched on the device after the
    transfer.
    ``decoder``: ``auto`` (where torchcodec imports and works: PyAV for streams with B-frames, torchcodec for
    the others; else PyAV), or force one. The pixels are the same whichever reads a video.
    ``shards_dir``: stream the clips from litdata shards packed by ``tc-clip pack`` (the training split
    must be packed there; evaluation sets are read from shards where packed, else from their files).
    ``defer_novel`` (default on): while its trainer fits, the validation sets with role ``"novel"`` are
    left out of ``eval_sets("validate")`` and ``val_dataloader()`` (:meth:`deferred_sets` names them):
    novel sets are evaluated once after fit, with the best-base weights, by the NovelAtBestBase callback.
    """

    dataset_name = "videos"
    _is_benchmark = False  # the benchmark modules: clean set names, group = benchmark
    _numbered_splits = False  # HMDB-51, UCF-101, K-600: evaluation sets are numbered splits

    def __init__(
        self,
        train_list: str | None = None,
        val_list: str | list[str] | None = None,
        test_list: str | list[str] | None = None,
        predict_list: str | list[str] | None = None,
        labels: str | None = None,
        val_labels: str | list[str] | None = None,
        test_labels: str | list[str] | None = None,
        novel_list: str | None = None,
        novel_labels: str | None = None,
        llm_names: str | None = None,
        eval_llm_names: str | list[str] | None = None,
        root: str | None = None,
        protocol: Protocol = "fully_supervised",
        shot: int | None = None,
        base_classes: str | list[str] | None = None,
        class_subset: str | list[str] | None = None,
        eval_group: str | None = None,
        eval_names: list[str] | None = None,
        split_dir: str | None = None,
        num_frames: int = 16,
        input_size: int = 224,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        device_augment: bool = True,
        decoder: Literal["auto", "torchcodec", "pyav"] = "auto",
        shards_dir: str | None = None,
        val_views: int = 1,
        val_crops: int = 1,
        test_views: int = 2,
        test_crops: int = 1,
        flip: bool = True,
        strict: bool = False,
        seed: int = 0,
        defer_novel: bool = True,
    ):
        super().__init__()
        if protocol not in ("fully_supervised", "few_shot", "base_to_novel", "zero_shot"):
            raise ValueError(f"unknown protocol {protocol!r}")
        unused = {
            "shot": (shot is not None, ("few_shot", "base_to_novel")),
            "base_classes": (bool(base_classes), ("base_to_novel",)),
            "novel_list": (bool(novel_list or novel_labels), ("base_to_novel",)),
        }
        for name, (given, protocols) in unused.items():
            if given and protocol not in protocols:
                raise ValueError(f"{name} is used by protocol {' / '.join(protocols)} only, not {protocol!r}")
        for name, v in (("val_crops", val_crops), ("test_crops", test_crops)):
            if v not in (1, 3):
                raise ValueError(f"{name} must be 1 or 3, got {v}")
        self.train_list = train_list
        self.val_list = val_list
        self.test_list = test_list
        self.predict_list = predict_list
        self.labels = labels
        self.val_labels = val_labels
        self.test_labels = test_labels
        self.novel_list = novel_list
        self.novel_labels = novel_labels
        self.llm_names = llm_names
        self.eval_llm_names = eval_llm_names
        self.root = root
        self.protocol = protocol
        self.shot = shot
        self.base_classes = base_classes
        self.class_subset = class_subset
        self.eval_group = eval_group
        self.eval_names = list(eval_names) if eval_names is not None else None
        self.split_dir = split_dir
        self.num_frames = num_frames
        self.input_size = input_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.device_augment = device_augment
        self.decoder = decoder
        self.shards_dir = shards_dir
        self.val_views, self.val_crops = val_views, val_crops
        self.test_views, self.test_crops = test_views, test_crops
        self.flip = flip
        self.strict = strict
        self.seed = seed
        self.defer_novel = defer_novel
        self._resolved: dict[str, list[SplitData]] = {}
        self._train_info: TrainInfo | None = None
        self._datasets: dict[str, list[VideoClipDataset]] = {}

    # --- resolving the splits ---------------------------------------------------------------------

    def _names(self, labels: str | None, errors: list[str] | None) -> list[str] | None:
        return ann.read_labels_csv(labels, errors) if labels else None

    def _from_list(
        self, spec: str, labels: str | None, errors: list[str] | None, name: str | None = None
    ) -> SplitData:
        """A list file or a class folder."""
        names = self._names(labels, errors)
        if os.path.isdir(spec):
            samples, names = ann.scan_class_folders(spec, names, errors)
            default_name = Path(spec).name
        else:
            if names is None:
                raise ValueError(f"{spec}: a list file needs a labels CSV ('id,name'); set `labels`")
            samples = ann.read_list_file(spec, self._list_root(), len(names), errors)
            default_name = Path(spec).stem
        return SplitData(name or default_name, samples, names)

    def _list_root(self) -> str | None:
        """Folder that list-file paths are relative to: ``videos_dir`` where the module has one, else
        ``root`` (else the list file's folder)."""
        return getattr(self, "videos_dir", None) or self.root

    def _llm(self, split: SplitData, path: str | None, errors: list[str] | None) -> SplitData:
        if path:
            split.display_names = ann.read_llm_names(path, len(split.class_names), errors)
        return split

    def _official_train(self, errors: list[str] | None) -> SplitData | None:
        """The dataset's own training split (subclasses)."""
        return None

    def _official_evals(self, stage: str, errors: list[str] | None) -> list[SplitData]:
        """The dataset's own evaluation splits (subclasses)."""
        return []

    def _train_split(self, errors: list[str] | None) -> SplitData | None:
        if self.train_list:
            split = self._from_list(self.train_list, self.labels, errors, name="train")
        else:
            split = self._official_train(errors)
        return self._llm(split, self.llm_names, errors) if split is not None else None

    def _eval_splits(self, stage: str, errors: list[str] | None) -> list[SplitData]:
        lists = _as_list(self.test_list if stage == "test" else self.val_list)
        label_spec = self.test_labels if stage == "test" else self.val_labels
        if stage == "test" and not lists and self.val_list:
            lists, label_spec = _as_list(self.val_list), self.val_labels
        if stage == "validate" and not lists and self.test_list and self.protocol == "zero_shot":
            lists, label_spec = _as_list(self.test_list), self.test_labels
        if not lists:
            splits = self._official_evals(stage, errors)
        else:
            label_files = _as_list(label_spec) or [self.labels] * len(lists)
            if len(label_files) == 1:
                label_files = label_files * len(lists)
            if len(label_files) != len(lists):
                raise ValueError(f"{len(lists)} {stage} lists but {len(label_files)} label files")
            splits = []
            stems = [Path(p).stem for p in lists]
            for i, (spec, lab) in enumerate(zip(lists, label_files, strict=False)):
                name = stems[i] if stems.count(stems[i]) == 1 else f"{stems[i]}_{i}"
                split = self._from_list(spec, lab, errors, name=name)
                split.group = self.eval_group
                splits.append(split)
        llm = _as_list(self.eval_llm_names)
        if llm:
            if len(llm) == 1:
                llm = llm * len(splits)
            if len(llm) != len(splits):
                raise ValueError(f"{len(splits)} {stage} sets but {len(llm)} eval_llm_names files")
            splits = [self._llm(s, p, errors) for s, p in zip(splits, llm, strict=False)]
        return splits

    def _predict_split(self, errors: list[str] | None) -> SplitData | None:
        if not self.predict_list:
            return None
        samples = ann.list_videos(self.predict_list)
        ref = self._resolved_reference_names(errors)
        return SplitData("predict", samples, ref[0], ref[1])

    def _resolved_reference_names(self, errors) -> tuple[list[str], list[str]]:
        for stage in ("test", "validate", "fit"):
            try:
                splits = self.splits(stage)
            except (OSError, ValueError):
                continue
            if splits:
                return splits[0].class_names, splits[0].display_names
        names = self._names(self.labels, errors) or []
        return names, names

    def _class_ids(self, split: SplitData, spec: str | list[str], what: str) -> list[int]:
        wanted = ann.read_class_list(spec) or []
        lookup = {n: i for i, n in enumerate(split.class_names)}
        missing = [n for n in wanted if n not in lookup]
        if missing:
            src = spec if isinstance(spec, str) else what
            raise ValueError(f"{src}: {what} names not in the class list of '{split.name}': {missing[:10]}")
        return [lookup[n] for n in wanted]

    def _resolve_split_dir(self) -> Path:
        if self.split_dir:
            return Path(self.split_dir).expanduser()
        trainer = getattr(self, "trainer", None)
        log_dir = getattr(trainer, "log_dir", None) if trainer is not None else None
        if log_dir:
            return Path(log_dir) / "splits"
        return Path("~/.cache/tc_clip/splits").expanduser()

    def _draw(self, split: SplitData, shot: int) -> tuple[SplitData, TrainInfo]:
        """``shot`` videos per class drawn with ``seed``: a different experiment from the paper's public
        lists, so it is logged as one, and the list is written so that the run can be repeated."""
        source = self.train_list or f"the {self.dataset_name} training split"
        samples = ann.sample_few_shot(split.samples, shot, self.seed, split.class_names, source)
        stem = split.name if split.name.startswith(self.dataset_name) else f"{self.dataset_name}_{split.name}"
        out = self._resolve_split_dir() / f"{stem}_{shot}shot_seed{self.seed}.txt"
        written: str | None = str(out)
        try:
            ann.write_list_file(samples, out, self._list_root())  # absolute paths without a root
        except (OSError, ValueError) as e:
            warnings.warn(f"could not write the drawn few-shot list to {out}: {e}", stacklevel=2)
            written = None
        log.warning(
            "%s: drew %d videos per class with seed %d from %s (%d videos, written to %s). A seed-drawn list "
            "is a different experiment from the paper's, which uses the public K-shot list files: pass one "
            "as train_list to reproduce it.",
            type(self).__name__, shot, self.seed, source, len(samples), written,
        )
        return replace(split, samples=samples), TrainInfo("seed_drawn", shot, self.seed, written)

    def _shots(self, split: SplitData, from_file: bool) -> tuple[SplitData, TrainInfo]:
        """Few-shot training data: a list file as it is (K = its per-class count), or drawn."""
        counts = ann.shots_per_class(split.samples)
        if not counts:
            raise ValueError(f"{self.train_list or type(self).__name__}: the training split is empty")
        if not from_file:
            shot = self.shot or (16 if self.protocol == "base_to_novel" else None)
            if shot is None:
                raise ValueError(
                    f"{type(self).__name__}: protocol 'few_shot' needs the public K-shot list as train_list "
                    "(the paper's experiment), or shot=K (--data.shot) to draw K videos per class with seed"
                )
            return self._draw(split, shot)
        least, most = min(counts.values()), max(counts.values())
        if self.shot is not None and not self.shot == least == most:
            return self._draw(split, self.shot)  # more than the list holds: sample_few_shot's error
        absent = len(split.class_names) - len(counts)
        if least != most or absent:
            warnings.warn(
                f"{self.train_list}: the few-shot list holds {least}-{most} videos per class"
                + (f" and none of {absent} classes" if absent else "")
                + f"; reporting shot={least}",
                stacklevel=2,
            )
        match = _SEED_IN_NAME.search(Path(str(self.train_list)).stem)
        return split, TrainInfo("list_file", least, int(match.group(1)) if match else None, str(self.train_list))

    def _base_ids(self, split: SplitData) -> list[int]:
        if self.base_classes:
            return self._class_ids(split, self.base_classes, "base_classes")
        benchmark = self.benchmark or ""
        return published_base_ids(benchmark, split.class_names, f"{type(self).__name__} '{split.name}'")

    def _resolve_fit(self, errors: list[str] | None) -> list[SplitData]:
        train = self._train_split(errors)
        if train is None:
            self._train_info = None
            return []
        from_file = bool(self.train_list) and not os.path.isdir(str(self.train_list))
        if self.class_subset:
            train = train.subset(self._class_ids(train, self.class_subset, "class_subset"))
        if self.protocol == "base_to_novel" and not self.novel_list:
            train = train.subset(self._base_ids(train))
        if self.protocol in ("few_shot", "base_to_novel"):
            train, self._train_info = self._shots(train, from_file)
        else:
            self._train_info = TrainInfo("list_file" if self.train_list else "dataset", None, None, self.train_list)
        return [train]

    def _base_novel_sets(self, splits: list[SplitData], stage: str, errors: list[str] | None) -> list[SplitData]:
        """Base and novel evaluation sets: the public base/novel lists as they are (``novel_list``), or
        every evaluation list split into its base and novel classes."""
        if self.novel_list:
            if self.base_classes:
                raise ValueError("base_classes and novel_list exclude each other: with the public base/novel "
                                 "lists the label files already say which classes are base and novel")
            if len(splits) != 1:
                raise ValueError(f"novel_list: base-to-novel with the public lists needs exactly one {stage} "
                                 f"list (base_val.txt), got {len(splits)}")
            labels = self.novel_labels
            if not labels and not os.path.isdir(self.novel_list):
                raise ValueError(f"{self.novel_list}: novel_list needs novel_labels (the novel classes' 'id,name' CSV)")
            novel = self._from_list(self.novel_list, labels, errors, name=Path(self.novel_list).stem)
            base = splits[0]
            base.role, novel.role = "base", "novel"
            return [base, novel]
        out = []
        for s in splits:
            base_ids = self._base_ids(s)
            novel_ids = [i for i in range(len(s.class_names)) if i not in set(base_ids)]
            out.append(s.subset(base_ids, s.name, "base"))
            out.append(s.subset(novel_ids, s.name, "novel"))
        return out

    def _name_sets(self, stage: str, splits: list[SplitData]) -> list[SplitData]:
        """Clean evaluation-set names and groups (module docstring), or the config's ``eval_names``."""
        bench = self.benchmark if self._is_benchmark else None
        group = self.eval_group or bench
        roles = sum(1 for s in splits if s.role == "base")
        plain = [s for s in splits if s.role is None]
        numbered = self._numbered_splits and (self.protocol == "zero_shot" or hasattr(self, "split"))
        for pos, s in enumerate(plain if bench is not None else []):
            if numbered and (len(plain) > 1 or self.protocol == "zero_shot"):
                number = s.number or (pos + 1 if len(plain) > 1 else self._split_number)
                s.name = f"{bench}/split{number}"
            elif len(plain) == 1:
                s.name = f"{bench}/split{self._split_number}" if numbered else f"{bench}/val"
            else:
                s.name = f"{bench}/{s.name}"
        for s in splits:
            if s.role is not None:
                if bench is not None:
                    s.name = f"{bench}/{s.role}" if roles == 1 else f"{bench}/{s.name}/{s.role}"
                elif not self.novel_list:
                    s.name = f"{s.name}/{s.role}"
            if group is not None:
                s.group = group
        if self.eval_names is not None:
            if len(self.eval_names) != len(splits):
                raise ValueError(
                    f"eval_names gives {len(self.eval_names)} names but the {stage} stage has {len(splits)} "
                    f"evaluation sets ({[s.name for s in splits]})"
                )
            for s, name in zip(splits, self.eval_names, strict=True):
                s.name = name
        names = [s.name for s in splits]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{type(self).__name__}: two {stage} evaluation sets are named {dup}; set eval_names")
        return splits

    def _resolve(self, stage: str, errors: list[str] | None = None) -> list[SplitData]:
        """Read and apply the protocol to the splits of one stage ("fit", "validate", "test",
        "predict"). Stages are independent: a test-only run never reads the training annotations."""
        if stage == "predict":
            predict = self._predict_split(errors)
            return [predict] if predict is not None else []
        if stage == "fit":
            return self._resolve_fit(errors)
        if stage not in ("validate", "test"):
            raise ValueError(f"unknown stage {stage!r}")
        splits = self._eval_splits(stage, errors)
        if self.class_subset:
            splits = [s.subset(self._class_ids(s, self.class_subset, "class_subset")) for s in splits]
        if self.protocol == "base_to_novel":
            splits = self._base_novel_sets(splits, stage, errors)
        return self._name_sets(stage, splits)

    def splits(self, stage: str) -> list[SplitData]:
        """The resolved splits of a stage ("fit" = the training split; cached)."""
        if stage not in self._resolved:
            self._resolved[stage] = self._resolve(stage)
        return list(self._resolved[stage])

    # --- public API -------------------------------------------------------------------------------

    @property
    def train_class_names(self) -> list[str]:
        """Class names of the training split, as the model should see them (raw label-file names, or
        the LLM-rephrased ones). Without training data: those of the first evaluation set."""
        for stage in ("fit", "validate", "test"):
            splits = self.splits(stage)
            if splits:
                return list(splits[0].display_names)
        return []

    @property
    def class_names(self) -> list[str]:
        return self.train_class_names

    def eval_sets(self, stage: str) -> list[EvalSetInfo]:
        """One :class:`EvalSetInfo` per dataloader of ``stage`` ("validate", "test" or "predict")."""
        if stage not in EVAL_STAGES:
            raise ValueError(f"stage must be one of {EVAL_STAGES}, got {stage!r}")
        splits = self.splits(stage)
        return [splits[i].info() for i in self._kept(stage, splits)]

    def deferred_sets(self) -> list[EvalSetInfo]:
        """The validation sets that ``defer_novel`` leaves out while fitting (role ``"novel"``), whether
        or not a fit is running: what is left to evaluate after fit with the best-base weights."""
        if not self.defer_novel:
            return []
        return [s.info() for s in self.splits("validate") if s.role == "novel"]

    def _fitting(self) -> bool:
        trainer = self.trainer
        return trainer is not None and trainer.state.fn == "fit"

    def _kept(self, stage: str, splits: list[SplitData]) -> list[int]:
        """Positions of the sets of ``stage`` that are evaluated now: all but the deferred novel sets."""
        defer = stage == "validate" and self.defer_novel and self._fitting()
        return [i for i, s in enumerate(splits) if not (defer and s.role == "novel")]

    @property
    def few_shot_list(self) -> str | None:
        """The few-shot training list: the given list file, or where the drawn one was written."""
        self.splits("fit")
        return self._train_info.list_path if self._train_info is not None else None

    @property
    def benchmark(self) -> str | None:
        """The benchmark (``hmdb51``, ``ucf101``, ``k400``, ``k600``, ``ssv2``; for generic lists
        ``eval_group``): the group of its evaluation sets and the key of its published base/novel split."""
        return self.dataset_name if self._is_benchmark else self.eval_group

    @property
    def _split_number(self) -> int:
        return int(getattr(self, "split", 1))

    def describe(self) -> dict:
        """What experiment this data makes, for the results file: ``protocol``, ``benchmark``, ``shot``
        (per-class count of the few-shot training list), ``seed`` (of a drawn list, or the ``s<N>`` /
        ``seed<N>`` in a public list's name), ``train_list`` (the list file used, given or drawn) and
        ``train_source``: ``"list_file"`` (used as given: the paper's experiment with the public lists),
        ``"seed_drawn"`` (a different experiment) or ``"dataset"`` (the dataset's own training split).
        The training split is read only when it is a list file or was read already (a test-only run
        does not index a dataset's training annotations); otherwise the configured values are given."""
        info = self._train_info
        if "fit" not in self._resolved and self.train_list and not os.path.isdir(str(self.train_list)):
            try:
                self.splits("fit")
                info = self._train_info
            except (OSError, ValueError) as e:
                log.warning("describe(): could not read the training list %s: %s", self.train_list, e)
        if info is None:
            drawn = self.protocol in ("few_shot", "base_to_novel") and not self.train_list
            shot = (self.shot or (16 if self.protocol == "base_to_novel" else None)) if drawn else self.shot
            source = "seed_drawn" if drawn else ("list_file" if self.train_list else "dataset")
            info = TrainInfo(source, shot, self.seed if drawn else None, self.train_list)
        few = self.protocol in ("few_shot", "base_to_novel")
        return {
            "protocol": self.protocol,
            "benchmark": self.benchmark,
            "shot": info.shot if few else None,
            "seed": info.seed if few else None,
            "train_list": info.list_path,
            "train_source": info.source,
        }

    def setup(self, stage: str | None = None) -> None:
        stages = ["fit", "validate", "test", "predict"] if stage is None else [stage]
        if "fit" in stages:
            stages.append("validate")
        for st in dict.fromkeys(stages):
            self._resolved.pop(st, None)  # re-read: files may have changed since the last setup
            splits = self.splits(st)
            if st == "fit":
                if not splits:
                    raise ValueError(f"{type(self).__name__}: no training data (set train_list)")
                if not splits[0].samples:
                    raise ValueError(f"{type(self).__name__}: the training split is empty")
                self._datasets["fit"] = [self._dataset(splits[0].samples, train=True)]
            else:
                self._datasets[st] = [self._dataset(x.samples, train=False, stage=st) for x in splits]

    def _dataset(self, samples: list[Sample], train: bool, stage: str = "fit") -> VideoClipDataset:
        views, crops = (
            (self.val_views, self.val_crops) if stage == "validate" else (self.test_views, self.test_crops)
        )
        return VideoClipDataset(
            samples,
            num_frames=self.num_frames,
            input_size=self.input_size,
            train=train,
            views=views,
            crops=crops,
            flip=self.flip,
            strict=self.strict,
            return_path=stage == "predict",
            device_augment=self.device_augment,
            decoder=self.decoder,
        )

    def _loader(self, dataset: VideoClipDataset, train: bool) -> DataLoader:
        if self.shards_dir:  # litdata shards written by tc_clip.data.shards.pack (`tc-clip pack`)
            from tc_clip.data.shards import sharded_loader

            if (loader := sharded_loader(self, dataset, train)) is not None:
                return loader
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        workers = self.num_workers
        sampler = ResumableSampler(dataset, seed=self.seed) if train else None  # exact resume
        return DataLoader(
            SeededDataset(dataset) if train else dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=train and len(dataset) >= self.batch_size,
            num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and workers > 0,
            worker_init_fn=worker_init_fn,
            generator=generator,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Colour augmentation and normalisation of ``uint8`` clips, batched on the device
        (:func:`tc_clip.data.gpu_augment.device_transform`; Lightning calls this hook of the data module)."""
        return device_transform(batch)

    def _stage_datasets(self, stage: str) -> list[VideoClipDataset]:
        if stage not in self._datasets:
            self.setup(stage)
        return self._datasets[stage]

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._stage_datasets("fit")[0], train=True)

    def val_dataloader(self) -> list[DataLoader]:
        datasets = self._stage_datasets("validate")
        return [self._loader(datasets[i], train=False) for i in self._kept("validate", self.splits("validate"))]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(d, train=False) for d in self._stage_datasets("test")]

    def predict_dataloader(self) -> DataLoader:
        ds = self._stage_datasets("predict")
        if not ds:
            raise ValueError(f"{type(self).__name__}: set predict_list to predict")
        return self._loader(ds[0], train=False)


# --- the benchmarks' own layouts --------------------------------------------------------------------


def _first_existing(*candidates: Path, override: str | None = None) -> Path:
    """``override`` when the user gave one, else the first candidate that exists (else the first)."""
    if override:
        return Path(override)
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def _relabel(split: SplitData, labels: str | None, errors: list[str] | None) -> SplitData:
    """Map a split read from the dataset's annotations onto the ids of a user-given labels CSV. Names
    match exactly, else ignoring case, spaces and punctuation (the split files' ``brush_hair`` is the
    label file's ``brush hair``) where that is unambiguous."""
    if not labels:
        return split
    names = ann.read_labels_csv(labels, errors)
    lookup = {n: i for i, n in enumerate(names)}
    keys = [name_key(n) for n in names]
    for n, i in {k: i for i, k in enumerate(keys) if keys.count(k) == 1}.items():
        lookup.setdefault(n, i)
    samples = []
    for s in split.samples:
        name = split.class_names[s.label]
        found = lookup.get(name, lookup.get(name_key(name)))
        if found is None:
            ann._fail(errors, f"{s.where}: class {name!r} is not in the label file {labels}")
            continue
        samples.append(Sample(s.path, found, s.where))
    return SplitData(split.name, samples, names, group=split.group, role=split.role)


class _SplitsDataModule(VideoDataModule):
    """Shared logic of HMDB-51 and UCF-101: three official splits, ``split`` picks one, and optional
    ``videos_dir`` / ``splits_dir`` overriding where the videos and split files are looked for."""

    num_splits = 3
    title = "the dataset"
    _is_benchmark = True
    _numbered_splits = True

    def __init__(
        self,
        split: int = 1,
        videos_dir: str | None = None,
        splits_dir: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if split not in range(1, self.num_splits + 1):
            raise ValueError(f"{self.title} has splits 1-{self.num_splits}, got {split}")
        self.split = split
        self.videos_dir = videos_dir
        self.splits_dir = splits_dir

    def _read(self, split: int, train: bool, errors: list[str] | None) -> tuple[list[Sample], list[str]]:
        raise NotImplementedError

    def _official(self, split: int, train: bool, errors: list[str] | None) -> SplitData:
        samples, names = self._read(split, train, errors)
        name = f"{self.dataset_name}_split{split}" + ("_train" if train else "")
        out = _relabel(SplitData(name, samples, names), self.labels, errors)
        out.number = split
        return out

    def _official_train(self, errors):
        return self._official(self.split, True, errors)

    def _official_evals(self, stage, errors):
        if stage == "predict":
            return []
        if self.protocol == "zero_shot":
            return [self._official(k, False, errors) for k in range(1, self.num_splits + 1)]
        return [self._official(self.split, False, errors)]


class HMDB51DataModule(_SplitsDataModule):
    """HMDB-51 as distributed: ``videos/<class>/<video>.avi`` (default: ``root`` itself when it holds
    the class folders, else ``root/videos`` or ``root/hmdb51``) and the split files
    ``<class>_test_split<N>.txt`` (default: ``root/testTrainMulti_7030_splits`` or ``root/splits``).
    ``split`` (1-3) picks the train/test split; ``protocol="zero_shot"`` evaluates all three test splits
    (``hmdb51/split1..3``, group ``"hmdb51"``). List-file arguments override the official splits (e.g.
    the public few-shot lists; their paths are relative to ``videos_dir``, else ``root``); see
    :class:`VideoDataModule` for the other arguments."""

    dataset_name = "hmdb51"
    title = "HMDB-51"

    def __init__(self, root: str = "data/hmdb51", **kwargs):
        super().__init__(root=root, **kwargs)

    def _read(self, split, train, errors):
        root = Path(self.root or ".")
        splits_dir = _first_existing(
            root / "testTrainMulti_7030_splits", root / "splits", root / "annotations", root,
            override=self.splits_dir,
        )
        samples, names = ann.read_hmdb51(splits_dir, ".", split, train, errors)
        if self.videos_dir:
            videos = Path(self.videos_dir)
        else:
            candidates = [root, root / "videos", root / "hmdb51", root / "hmdb51_org"]
            videos = next((c for c in candidates if names and (c / names[0]).is_dir()), root / "videos")
        for s in samples:
            s.path = str(videos / os.path.relpath(s.path, "."))
        return samples, names


class UCF101DataModule(_SplitsDataModule):
    """UCF-101 as distributed: ``UCF-101/<Class>/v_*.avi`` (default: ``root/UCF-101``, else ``root``)
    and ``ucfTrainTestlist/`` with ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt`` (default:
    ``root/ucfTrainTestlist``, else ``root``). ``split`` (1-3); ``protocol="zero_shot"`` evaluates the
    three test lists (``ucf101/split1..3``, group ``"ucf101"``). See :class:`VideoDataModule` for the
    other arguments."""

    dataset_name = "ucf101"
    title = "UCF-101"

    def __init__(self, root: str = "data/ucf101", **kwargs):
        super().__init__(root=root, **kwargs)

    def _read(self, split, train, errors):
        root = Path(self.root or ".")
        splits_dir = _first_existing(
            root / "ucfTrainTestlist", root / "splits", root / "annotations", root, override=self.splits_dir
        )
        videos = _first_existing(root / "UCF-101", root, override=self.videos_dir)
        return ann.read_ucf101(splits_dir, videos, split, train, errors)


class SSv2DataModule(VideoDataModule):
    """Something-Something v2 as distributed: ``labels.json``, ``train.json``, ``validation.json`` (and
    ``test.json``) in ``annotations_dir`` (default: ``root/labels``, else ``root``) and ``<id>.webm``
    videos in ``videos_dir`` (default: ``root/20bn-something-something-v2``, else ``root``). Class names
    are the templates without brackets. Horizontal flipping is off by default (it changes the meaning of
    left/right classes). See :class:`VideoDataModule` for the other arguments."""

    dataset_name = "ssv2"
    _is_benchmark = True

    def __init__(
        self,
        root: str = "data/ssv2",
        videos_dir: str | None = None,
        annotations_dir: str | None = None,
        *,
        flip: bool = False,
        **kwargs,
    ):
        super().__init__(root=root, flip=flip, **kwargs)
        self.videos_dir = videos_dir
        self.annotations_dir = annotations_dir

    def _official(self, split_file: str, name: str, errors) -> SplitData:
        root = Path(self.root or ".")
        ann_dir = _first_existing(root / "labels", root / "annotations", root, override=self.annotations_dir)
        videos = _first_existing(
            root / "20bn-something-something-v2", root / "videos", root, override=self.videos_dir
        )
        samples, names = ann.read_ssv2(ann_dir / "labels.json", ann_dir / split_file, videos, errors)
        return _relabel(SplitData(name, samples, names), self.labels, errors)

    def _official_train(self, errors):
        return self._official("train.json", "ssv2_train", errors)

    def _official_evals(self, stage, errors):
        return [self._official("validation.json", "ssv2_val", errors)]


class Kinetics400DataModule(VideoDataModule):
    """Kinetics as distributed: CSVs ``label,youtube_id,time_start,time_end,split`` (``train.csv``,
    ``validate.csv`` or ``val.csv``, ``test.csv`` in ``annotations_dir``, default ``root/annotations``,
    else ``root``) and videos named ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (or ``<youtube_id>.<ext>``)
    anywhere below ``videos_dir`` (default ``root``). Rows whose video is missing are dropped with one
    warning (every Kinetics copy lacks some videos). Class ids: the sorted label names, or ``labels``.
    For zero-shot evaluation on the K-600 novel classes pass the split lists as ``test_list`` /
    ``test_labels``. See :class:`VideoDataModule` for the other arguments."""

    dataset_name = "k400"
    _is_benchmark = True

    def __init__(
        self,
        root: str = "data/kinetics400",
        videos_dir: str | None = None,
        annotations_dir: str | None = None,
        **kwargs,
    ):
        super().__init__(root=root, **kwargs)
        self.videos_dir = videos_dir
        self.annotations_dir = annotations_dir
        self._video_index: dict[str, str] | None = None

    def _official(self, names: tuple[str, ...], split_name: str, errors) -> SplitData:
        root = Path(self.root or ".")
        ann_dir = _first_existing(root / "annotations", root, override=self.annotations_dir)
        csv_path = _first_existing(*(ann_dir / n for n in names))
        if self._video_index is None:
            self._video_index = ann.index_videos(self.videos_dir or root)
        class_names = ann.read_labels_csv(self.labels, errors) if self.labels else None
        if class_names is None:  # class ids: the sorted names of the training CSV
            train_csv = _first_existing(ann_dir / "train.csv", csv_path)
            _, class_names, _ = ann.read_kinetics_csv(train_csv, {}, None, errors)
        samples, class_names, missing = ann.read_kinetics_csv(
            csv_path, self._video_index, class_names, errors
        )
        if missing:
            warnings.warn(
                f"{len(missing)} of {len(missing) + len(samples)} videos listed in {csv_path} were not "
                f"found below {self.videos_dir or root} and are left out (first: {missing[0]})",
                stacklevel=2,
            )
        return SplitData(f"{self.dataset_name}_{split_name}", samples, class_names)

    def _official_train(self, errors):
        return self._official(("train.csv",), "train", errors)

    def _official_evals(self, stage, errors):
        return [self._official(("validate.csv", "val.csv", "valid.csv"), "val", errors)]


class Kinetics600DataModule(Kinetics400DataModule):
    """Kinetics-600, same layout as :class:`Kinetics400DataModule`. Zero-shot evaluation on the three
    splits of 160 classes new to K-400: pass the three list files as ``test_list`` (and ``val_list``)
    with their label files as ``test_labels``; they are named ``k600/split1..3``, group ``"k600"``."""

    dataset_name = "k600"
    _numbered_splits = True


class SyntheticVideoDataModule(VideoDataModule):
    """Moving coloured shapes (see :mod:`tc_clip.data.synthetic`), generated on first use under
    ``cache_dir/<parameters>`` (idempotent, keyed by the generation parameters): ``videos_per_class``
    training and ``val_per_class`` validation videos per class, ``video_frames`` frames of
    ``video_width`` x ``video_height`` at ``fps``; the test stage uses the validation videos and
    ``predict_list`` (a folder, list file or paths) the videos to classify. Meant for tests and the
    offline demo (defaults: 8 frames at 64 x 64). See :class:`VideoDataModule` for the clip, loader and
    protocol arguments."""

    dataset_name = "synthetic"
    _is_benchmark = True  # clean set names: synthetic/val

    def __init__(
        self,
        cache_dir: str = "~/.cache/tc_clip/synthetic",
        num_classes: int = 5,
        videos_per_class: int = 16,
        val_per_class: int = 4,
        video_frames: int = 24,
        video_width: int = 96,
        video_height: int = 72,
        fps: float = 15,
        formats: list[str] | None = None,
        generation_seed: int = 0,
        predict_list: str | list[str] | None = None,
        *,
        num_frames: int = 8,
        input_size: int = 64,
        num_workers: int = 2,
        test_views: int = 1,
        **kwargs,
    ):
        from tc_clip.data import synthetic

        gen_kwargs = dict(
            num_classes=num_classes,
            videos_per_class=videos_per_class,
            val_per_class=val_per_class,
            num_frames=video_frames,
            width=video_width,
            height=video_height,
            fps=fps,
            formats=tuple(formats or ("mp4", "avi", "webm")),
            seed=generation_seed,
        )
        root = Path(cache_dir).expanduser() / synthetic._key(**gen_kwargs)
        # The data files are the generated ones: the list/label arguments are set here, so they are
        # neither accepted by this class nor shown by the CLI.
        super().__init__(
            train_list=str(root / "train.txt"),
            val_list=str(root / "val.txt"),
            test_list=None,
            predict_list=predict_list,
            labels=str(root / "labels.csv"),
            val_labels=None,
            test_labels=None,
            novel_list=None,
            novel_labels=None,
            llm_names=None,
            eval_llm_names=None,
            root=str(root),
            eval_group=None,
            num_frames=num_frames,
            input_size=input_size,
            num_workers=num_workers,
            test_views=test_views,
            **kwargs,
        )
        self.cache_dir = cache_dir
        self.gen_kwargs = gen_kwargs

    def prepare_data(self) -> None:
        from tc_clip.data import synthetic

        synthetic.generate(self.root, **self.gen_kwargs)

    def _resolve(self, stage, errors=None):
        self.prepare_data()  # idempotent; also covers use without a Trainer
        return super()._resolve(stage, errors)


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
        num_workers: int = 4,
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
            m.setup(stage)

    def eval_sets(self, stage: str) -> list[EvalSetInfo]:
        """The members' evaluation sets of ``stage``, concatenated (renamed by ``eval_names``)."""
        if stage == "predict":
            return []
        sets = [info for m in self.members.values() for info in m.eval_sets(stage)]
        if self.eval_names is not None:
            if len(self.eval_names) != len(sets):
                raise ValueError(
                    f"eval_names gives {len(self.eval_names)} names but the suite has {len(sets)} {stage} "
                    f"sets ({[s.name for s in sets]})"
                )
            sets = [replace(s, name=n) for s, n in zip(sets, self.eval_names, strict=True)]
        names = [s.name for s in sets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"ZeroShotSuiteDataModule: two {stage} evaluation sets are named {dup}; set eval_names")
        return sets

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
