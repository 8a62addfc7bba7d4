"""LightningDataModules: generic list files / class folders, and the five benchmarks' own layouts."""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from tc_clip.data import annotations as ann
from tc_clip.data.annotations import Sample
from tc_clip.data.dataset import VideoClipDataset, worker_init_fn
from tc_clip.data.gpu_augment import device_transform

__all__ = [
    "EvalSetInfo",
    "VideoDataModule",
    "HMDB51DataModule",
    "UCF101DataModule",
    "SSv2DataModule",
    "Kinetics400DataModule",
    "Kinetics600DataModule",
]

log = logging.getLogger(__name__)

Protocol = Literal["fully_supervised", "few_shot", "base_to_novel", "zero_shot"]
EVAL_STAGES = ("validate", "test", "predict")


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
        )

    def info(self) -> EvalSetInfo:
        return EvalSetInfo(self.name, list(self.display_names), self.group, self.role)


def _as_list(x) -> list:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


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

    Protocols: ``few_shot`` samples ``shot`` training videos per class with ``seed`` and writes the list
    to ``split_dir`` (default: the trainer's log dir, else ``~/.cache/tc_clip/splits``);
    ``base_to_novel`` keeps the ``base_classes`` (names, or a file; default the first half of the class
    ids) for training (``shot`` per class, default 16) and evaluates every eval list twice, on its base
    and on its novel classes, labels remapped; ``zero_shot`` groups the eval lists under ``eval_group``.
    ``class_subset`` (names or a file: one name a line, or a labels CSV) restricts every split to those
    classes (e.g. the temporal / static subsets), labels remapped in the given order.

    Clips: ``num_frames`` frames, ``input_size`` pixels; training uses TSN sampling and the release's
    augmentation (``flip`` off for SSv2); evaluation ``val_views`` / ``test_views`` temporal views times
    ``val_crops`` / ``test_crops`` (1 or 3) crops. Bad videos are replaced and counted (``skipped``);
    ``strict=True`` raises instead. ``device_augment`` (default on): workers hand over ``uint8`` clips
    and the colour augmentation and normalisation run batched on the device after the transfer.
    ``decoder``: ``auto`` (torchcodec where it imports and works, else PyAV), or force one.
    ``shards_dir``: stream the clips from litdata shards packed by ``tc-clip pack`` (the training split
    must be packed there; evaluation sets are read from shards where packed, else from their files).
    """

    dataset_name = "videos"

    def __init__(
        self,
        train_list: str | None = None,
        val_list: str | list[str] | None = None,
        test_list: str | list[str] | None = None,
        predict_list: str | list[str] | None = None,
        labels: str | None = None,
        val_labels: str | list[str] | None = None,
        test_labels: str | list[str] | None = None,
        llm_names: str | None = None,
        eval_llm_names: str | list[str] | None = None,
        root: str | None = None,
        protocol: Protocol = "fully_supervised",
        shot: int | None = None,
        base_classes: str | list[str] | None = None,
        class_subset: str | list[str] | None = None,
        eval_group: str | None = None,
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
    ):
        super().__init__()
        if protocol not in ("fully_supervised", "few_shot", "base_to_novel", "zero_shot"):
            raise ValueError(f"unknown protocol {protocol!r}")
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
        self.llm_names = llm_names
        self.eval_llm_names = eval_llm_names
        self.root = root
        self.protocol = protocol
        self.shot = shot
        self.base_classes = base_classes
        self.class_subset = class_subset
        self.eval_group = eval_group
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
        self._resolved: dict[str, list[SplitData]] = {}
        self._few_shot_list: str | None = None
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
            samples = ann.read_list_file(spec, self.root, len(names), errors)
            default_name = Path(spec).stem
        return SplitData(name or default_name, samples, names)

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

    def _few_shot(self, split: SplitData, shot: int) -> tuple[SplitData, str]:
        samples = ann.sample_few_shot(split.samples, shot, self.seed)
        out = self._resolve_split_dir() / f"{self.dataset_name}_{split.name}_{shot}shot_seed{self.seed}.txt"
        try:
            ann.write_list_file(samples, out, self.root)  # absolute paths without a root
            log.info(
                "few-shot list (%d videos, %d per class, seed %d) written to %s",
                len(samples),
                shot,
                self.seed,
                out,
            )
        except (OSError, ValueError) as e:
            warnings.warn(f"could not write the few-shot list to {out}: {e}", stacklevel=2)
        return replace(split, samples=samples), str(out)

    def _base_ids(self, split: SplitData) -> list[int]:
        if self.base_classes:
            return self._class_ids(split, self.base_classes, "base_classes")
        return list(range(math.ceil(len(split.class_names) / 2)))

    def _resolve(self, stage: str, errors: list[str] | None = None) -> list[SplitData]:
        """Read and apply the protocol to the splits of one stage ("fit", "validate", "test",
        "predict"). Stages are independent: a test-only run never reads the training annotations."""
        if stage == "predict":
            predict = self._predict_split(errors)
            return [predict] if predict is not None else []
        if stage == "fit":
            train = self._train_split(errors)
            if train is None:
                return []
            if self.class_subset:
                train = train.subset(self._class_ids(train, self.class_subset, "class_subset"))
            if self.protocol == "base_to_novel":
                train, self._few_shot_list = self._few_shot(
                    train.subset(self._base_ids(train)), self.shot or 16
                )
            elif self.protocol == "few_shot":
                if not self.shot:
                    raise ValueError(f"{type(self).__name__}: protocol 'few_shot' needs shot=K (--data.shot)")
                train, self._few_shot_list = self._few_shot(train, self.shot)
            return [train]
        if stage not in ("validate", "test"):
            raise ValueError(f"unknown stage {stage!r}")
        splits = self._eval_splits(stage, errors)
        if self.class_subset:
            splits = [s.subset(self._class_ids(s, self.class_subset, "class_subset")) for s in splits]
        if self.protocol == "zero_shot" and self.eval_group:
            for s in splits:
                s.group = s.group or self.eval_group
        if self.protocol == "base_to_novel":
            new = []
            for s in splits:
                base = self._base_ids(s)
                novel = [i for i in range(len(s.class_names)) if i not in set(base)]
                new.append(s.subset(base, f"{s.name}_base", "base"))
                new.append(s.subset(novel, f"{s.name}_novel", "novel"))
            splits = new
        return splits

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
        return [s.info() for s in self.splits(stage)]

    @property
    def few_shot_list(self) -> str | None:
        """Where the sampled few-shot training list was written (few-shot and base-to-novel)."""
        self.splits("fit")
        return self._few_shot_list

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
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
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
        return [self._loader(d, train=False) for d in self._stage_datasets("validate")]

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
    """Map a split read from the dataset's annotations onto the ids of a user-given labels CSV."""
    if not labels:
        return split
    names = ann.read_labels_csv(labels, errors)
    lookup = {n: i for i, n in enumerate(names)}
    samples = []
    for s in split.samples:
        name = split.class_names[s.label]
        if name not in lookup:
            ann._fail(errors, f"{s.where}: class {name!r} is not in the label file {labels}")
            continue
        samples.append(Sample(s.path, lookup[name], s.where))
    return SplitData(split.name, samples, names, group=split.group, role=split.role)


class _SplitsDataModule(VideoDataModule):
    """Shared logic of HMDB-51 and UCF-101: three official splits, ``split`` picks one, and optional
    ``videos_dir`` / ``splits_dir`` overriding where the videos and split files are looked for."""

    num_splits = 3
    title = "the dataset"

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
        return _relabel(SplitData(name, samples, names), self.labels, errors)

    def _official_train(self, errors):
        return self._official(self.split, True, errors)

    def _official_evals(self, stage, errors):
        if stage == "predict":
            return []
        if self.protocol == "zero_shot":
            splits = [self._official(k, False, errors) for k in range(1, self.num_splits + 1)]
            for s in splits:
                s.group = self.eval_group or self.dataset_name
            return splits
        return [self._official(self.split, False, errors)]


class HMDB51DataModule(_SplitsDataModule):
    """HMDB-51 as distributed: ``videos/<class>/<video>.avi`` (default: ``root`` itself when it holds
    the class folders, else ``root/videos`` or ``root/hmdb51``) and the split files
    ``<class>_test_split<N>.txt`` (default: ``root/testTrainMulti_7030_splits`` or ``root/splits``).
    ``split`` (1-3) picks the train/test split; ``protocol="zero_shot"`` evaluates all three test splits
    (group ``"hmdb51"``). List-file arguments override the official splits (e.g. the public few-shot
    lists); see :class:`VideoDataModule` for the other arguments."""

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
    three test lists (group ``"ucf101"``). See :class:`VideoDataModule` for the other arguments."""

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
    with their label files as ``test_labels``; they are grouped as ``"k600"``."""

    dataset_name = "k600"

    def _eval_splits(self, stage, errors):
        splits = super()._eval_splits(stage, errors)
        if self.protocol == "zero_shot":
            for s in splits:
                s.group = s.group or self.eval_group or "k600"
        return splits


class SyntheticVideoDataModule(VideoDataModule):
    """Moving coloured shapes (see :mod:`tc_clip.data.synthetic`), generated on first use under
    ``cache_dir/<parameters>`` (idempotent, keyed by the generation parameters): ``videos_per_class``
    training and ``val_per_class`` validation videos per class, ``video_frames`` frames of
    ``video_width`` x ``video_height`` at ``fps``; the test stage uses the validation videos and
    ``predict_list`` (a folder, list file or paths) the videos to classify. Meant for tests and the
    offline demo (defaults: 8 frames at 64 x 64). See :class:`VideoDataModule` for the clip, loader and
    protocol arguments."""

    dataset_name = "synthetic"

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
