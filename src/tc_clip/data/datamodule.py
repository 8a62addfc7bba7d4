"""VideoDataModule: clips for TC-CLIP from list files or class folders, and the base of the benchmark modules.

The data module is the conductor of the data layer: it reads a stage's lists into
:class:`~tc_clip.data.splits.SplitData`, hands them to the protocol functions
(:mod:`tc_clip.data.protocols`: few-shot, base-to-novel, set names), builds the clip datasets
(:mod:`tc_clip.data.dataset`) and their loaders (:mod:`tc_clip.data.loaders`). A benchmark's own layout
(:mod:`tc_clip.data.benchmarks`) only fills the hooks ``_official_train`` / ``_official_evals`` (its
annotation readers), ``_list_root`` (where list paths start) and ``_split_number``, and declares
``dataset_name`` / ``_is_benchmark`` / ``_numbered_splits``; the base class never looks for anything else.
The zero-shot suite is :mod:`tc_clip.data.suite`.

The benchmark modules, the suite and the split shapes were defined here in 0.1: their old names here
still work for one release and warn (:mod:`tc_clip._deprecation`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import lightning as L
from torch.utils.data import DataLoader

from tc_clip._deprecation import moved
from tc_clip.data import annotations as ann
from tc_clip.data import lists, protocols
from tc_clip.data import splits as _splits
from tc_clip.data.annotations import Sample
from tc_clip.data.dataset import VideoClipDataset
from tc_clip.data.gpu_augment import device_transform
from tc_clip.data.layouts import VideoLocators
from tc_clip.data.lists import as_list
from tc_clip.data.loaders import LoaderOptions, make_loader, resolve_workers
from tc_clip.data.splits import ProtocolName

if TYPE_CHECKING:
    from tc_clip.data.splits import EvalSetInfo, SplitData, TrainInfo

__all__ = ["VideoDataModule"]

log = logging.getLogger(__name__)


class VideoDataModule(L.LightningDataModule):
    """Video clips for TC-CLIP from list files, class folders or (in the subclasses) a benchmark's own
    annotation files.

    Inputs: ``train_list`` / ``val_list`` / ``test_list`` are list files (``relative/path.ext label``
    lines, paths relative to ``root``, default the list file's folder; no line is a comment: HMDB-51
    names begin with ``#``) or folders with one sub-folder per class. ``val_list`` and ``test_list`` may
    name several lists: one dataloader (and one :class:`~tc_clip.data.splits.EvalSetInfo`) each.
    ``labels`` is the ``id,name`` CSV (required with list files); ``val_labels`` / ``test_labels`` give
    eval lists their own class lists (one file, or one per list). ``llm_names`` / ``eval_llm_names``:
    JSON ``{"0": "text"}`` replacing the names handed to the model. ``predict_list``: a list file, a
    folder of videos (searched recursively) or video paths; labels optional (-1). Without ``test_list``
    the test stage uses the validation lists.

    ``protocol`` (SPEC 5b; the rules are :mod:`tc_clip.data.protocols`): ``few_shot`` uses a public
    K-shot ``train_list`` as it is, or draws ``shot`` videos per class with ``seed`` (written to
    ``split_dir``, default the trainer's log dir, else ``~/.cache/tc_clip/splits``); ``base_to_novel``
    pairs the public ``base_val`` list with ``novel_list`` / ``novel_labels``, or splits every evaluation
    list into the ``base_classes`` (default: the benchmark's published split) and the rest, drawing
    ``shot`` (default 16) per base class without a training list; ``zero_shot`` makes every evaluation
    list a set of one group (the benchmark, or ``eval_group``), averaged as mean +- std.

    Evaluation-set names (``eval_sets``): ``<benchmark>/split<k>`` (HMDB-51, UCF-101, K-600 splits),
    ``<benchmark>/val`` (K-400, SSv2), ``<benchmark>/base`` / ``/novel``; a generic list is named by its
    file stem. ``eval_names`` replaces them (one name per set, in order). ``class_subset`` (names or a
    file: one name a line, or a labels CSV) restricts every split to those classes, labels remapped in
    the given order. ``defer_novel`` (default on): while its trainer fits, the validation sets with role
    ``"novel"`` are left out of ``eval_sets("validate")`` and ``val_dataloader()``
    (:meth:`deferred_sets` names them): novel sets are evaluated once after fit, with the best-base
    weights, by the NovelAtBestBase callback.

    Clips: ``num_frames`` frames, ``input_size`` pixels; training uses TSN sampling and the release's
    augmentation (``flip`` off for SSv2); evaluation ``val_views`` / ``test_views`` temporal views times
    ``val_crops`` / ``test_crops`` (1 or 3) crops. An unreadable training video is replaced by another;
    an unreadable evaluation video is left out of the metric and counted (``skipped``); both are named
    in a warning. ``strict=True`` raises instead. ``device_augment`` (default on): workers hand over
    ``uint8`` clips; the colour augmentation and normalisation run batched on the device. ``decoder``:
    ``auto`` (:mod:`tc_clip.data.decoding`: per stream, where torchcodec works) or force one; the pixels
    are the same whichever reads a video. ``shards_dir``: stream the clips from litdata shards packed by
    ``tc-clip pack`` (the training split must be packed there; evaluation sets are read from shards
    where packed, else from their files). ``num_workers``: loader workers per process, or ``"auto"``
    (the default): the CPUs of this process shared among the trainer's processes on this node, at most 8
    (:func:`~tc_clip.data.loaders.auto_workers`).
    """

    #: the benchmark's key (``hmdb51``, ...): its sets' group and its published base/novel split
    dataset_name = "videos"
    #: the benchmark modules: sets named ``<benchmark>/...``, grouped by benchmark
    _is_benchmark = False
    #: HMDB-51, UCF-101, K-600: evaluation sets are numbered splits
    _numbered_splits = False

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
        protocol: ProtocolName = "fully_supervised",
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
        num_workers: int | Literal["auto"] = "auto",
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
        protocols.check_options(protocol, shot=shot, base_classes=base_classes, novel_list=novel_list or novel_labels)
        for name, v in (("val_crops", val_crops), ("test_crops", test_crops)):
            if v not in (1, 3):
                raise ValueError(f"{name} must be 1 or 3, got {v}")
        # the lists, their classes and where their paths start
        self.train_list, self.val_list, self.test_list = train_list, val_list, test_list
        self.predict_list, self.novel_list, self.novel_labels = predict_list, novel_list, novel_labels
        self.labels, self.val_labels, self.test_labels = labels, val_labels, test_labels
        self.llm_names, self.eval_llm_names, self.root = llm_names, eval_llm_names, root
        # the protocol and the evaluation sets
        self.protocol, self.shot, self.seed, self.split_dir = protocol, shot, seed, split_dir
        self.base_classes, self.class_subset, self.eval_group = base_classes, class_subset, eval_group
        self.eval_names = list(eval_names) if eval_names is not None else None
        self.defer_novel = defer_novel
        # the clips
        self.num_frames, self.input_size, self.flip, self.strict = num_frames, input_size, flip, strict
        self.val_views, self.val_crops = val_views, val_crops
        self.test_views, self.test_crops = test_views, test_crops
        self.device_augment, self.decoder = device_augment, decoder
        # the loaders
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        resolve_workers(num_workers)  # a bad value fails here, not when the first loader is made
        self.num_workers, self.pin_memory, self.persistent_workers = num_workers, pin_memory, persistent_workers
        self.shards_dir = shards_dir
        self._resolved: dict[str, list[SplitData]] = {}
        self._train_info: TrainInfo | None = None
        self._datasets: dict[str, list[VideoClipDataset]] = {}
        self._videos = VideoLocators(getattr(self, "video_folders", ()))

    # --- hooks of the benchmark modules -----------------------------------------------------------

    def _official_train(self, errors: list[str] | None) -> SplitData | None:
        """The dataset's own training split (benchmark modules), used without ``train_list``."""
        return None

    def _official_evals(self, stage: str, errors: list[str] | None) -> list[SplitData]:
        """The dataset's own evaluation splits (benchmark modules), used without evaluation lists."""
        return []

    def _list_root(self) -> str | None:
        """Folder that list-file paths are relative to: ``root`` (benchmark modules: their videos folder),
        else the list file's folder."""
        return self.root

    @property
    def _split_number(self) -> int | None:
        """The benchmark split this module trains and validates on (HMDB-51, UCF-101), else None."""
        return None

    # --- reading the lists ------------------------------------------------------------------------

    def _locate(self, split: SplitData, spec: str | None, errors: list[str] | None) -> SplitData:
        """``split`` with the videos missing where its list says found by name (:mod:`tc_clip.data.layouts`)."""
        root = self._list_root() or (str(Path(spec).parent) if spec and not os.path.isdir(spec) else None)
        return self._videos.locate(split, root, spec or split.name, errors)

    @property
    def layout_notes(self) -> list[str]:
        """What the layout lookup did: lists whose videos were found elsewhere by name, or not at all."""
        return self._videos.notes

    def _train_split(self, errors: list[str] | None) -> SplitData | None:
        if self.train_list:
            split = lists.read_split(self.train_list, self.labels, self._list_root(), errors, name="train")
        else:
            split = self._official_train(errors)
        if split is None:
            return None
        split = self._locate(split, self.train_list, errors)
        return lists.with_llm_names([split], self.llm_names, "fit", errors)[0]

    def _eval_splits(self, stage: str, errors: list[str] | None) -> list[SplitData]:
        """The stage's lists (test falls back on the validation lists, zero-shot validation on the test
        lists), else the dataset's own evaluation splits."""
        specs = as_list(self.test_list if stage == "test" else self.val_list)
        label_spec = self.test_labels if stage == "test" else self.val_labels
        if stage == "test" and not specs and self.val_list:
            specs, label_spec = as_list(self.val_list), self.val_labels
        if stage == "validate" and not specs and self.test_list and self.protocol == "zero_shot":
            specs, label_spec = as_list(self.test_list), self.test_labels
        if specs:
            root = self._list_root()
            splits = lists.read_splits(specs, label_spec, self.labels, root, self.eval_group, stage, errors)
            splits = [self._locate(x, spec, errors) for x, spec in zip(splits, specs, strict=True)]
        else:
            splits = [self._locate(x, None, errors) for x in self._official_evals(stage, errors)]
        return lists.with_llm_names(splits, self.eval_llm_names, stage, errors)

    def _novel_split(self, errors: list[str] | None) -> SplitData:
        """The public novel list (``novel_val.txt``) with its own label file."""
        if not self.novel_labels and not os.path.isdir(self.novel_list):
            raise ValueError(f"{self.novel_list}: novel_list needs novel_labels (the novel classes' 'id,name' CSV)")
        name = Path(self.novel_list).stem
        split = lists.read_split(self.novel_list, self.novel_labels, self._list_root(), errors, name)
        return self._locate(split, self.novel_list, errors)

    def _predict_split(self, errors: list[str] | None) -> SplitData | None:
        if not self.predict_list:
            return None
        samples = ann.list_videos(self.predict_list)
        names, display = self._reference_names(errors)
        return _splits.SplitData("predict", samples, names, display)

    def _reference_names(self, errors) -> tuple[list[str], list[str]]:
        """The classes predictions are made into: those of the first split of test, validate or fit."""
        for stage in ("test", "validate", "fit"):
            try:
                splits = self.splits(stage)
            except (OSError, ValueError):
                continue
            if splits:
                return splits[0].class_names, splits[0].display_names
        names = lists.read_labels(self.labels, errors) or []
        return names, names

    # --- applying the protocol ----------------------------------------------------------------------

    def _split_dir(self) -> Path:
        """Where a drawn few-shot list is written: ``split_dir``, else the trainer's log dir, else a cache."""
        if self.split_dir:
            return Path(self.split_dir).expanduser()
        log_dir = getattr(self.trainer, "log_dir", None) if self.trainer is not None else None
        if log_dir:
            return Path(log_dir) / "splits"
        return Path("~/.cache/tc_clip/splits").expanduser()

    def _draw(self, split: SplitData, shot: int) -> tuple[SplitData, TrainInfo]:
        return protocols.draw_shots(
            split, shot, self.seed,
            source=self.train_list or f"the {self.dataset_name} training split",
            dataset_name=self.dataset_name, out_dir=self._split_dir(), list_root=self._list_root(),
            owner=type(self).__name__,
        )

    def _base_ids(self, split: SplitData) -> list[int]:
        return protocols.base_ids(split, self.base_classes, self.benchmark, type(self).__name__)

    def _resolve_fit(self, errors: list[str] | None) -> list[SplitData]:
        train = self._train_split(errors)
        if train is None:
            self._train_info = None
            return []
        if self.class_subset:
            train = train.subset(protocols.class_ids(train, self.class_subset, "class_subset"))
        if self.protocol == "base_to_novel" and not self.novel_list:
            train = train.subset(self._base_ids(train))
        if self.protocol in protocols.FEW_SHOT:
            train, self._train_info = protocols.few_shot_split(
                train, protocol=self.protocol, shot=self.shot, train_list=self.train_list,
                from_file=bool(self.train_list) and not os.path.isdir(str(self.train_list)),
                draw=self._draw, owner=type(self).__name__,
            )
        else:
            source = "list_file" if self.train_list else "dataset"
            self._train_info = _splits.TrainInfo(source, None, None, self.train_list)
        return [train]

    def _resolve_eval(self, stage: str, errors: list[str] | None) -> list[SplitData]:
        splits = self._eval_splits(stage, errors)
        if self.class_subset:
            splits = [s.subset(protocols.class_ids(s, self.class_subset, "class_subset")) for s in splits]
        if self.protocol == "base_to_novel" and self.novel_list:
            splits = protocols.pair_base_novel(splits, lambda: self._novel_split(errors), self.base_classes, stage)
        elif self.protocol == "base_to_novel":
            splits = protocols.split_base_novel(splits, self._base_ids)
        bench = self.dataset_name if self._is_benchmark else None
        protocols.name_sets(
            splits, benchmark=bench, group=self.eval_group or bench,
            numbered=self._numbered_splits and (self.protocol == "zero_shot" or self._split_number is not None),
            split_number=self._split_number or 1, zero_shot=self.protocol == "zero_shot",
            public_novel=bool(self.novel_list),
        )
        return protocols.rename_sets(splits, self.eval_names, stage, type(self).__name__, f"the {stage} stage")

    def resolve(self, stage: str, errors: list[str] | None = None) -> list[SplitData]:
        """Read the splits of one stage ("fit", "validate", "test", "predict") and apply the protocol,
        uncached. ``errors``: a list that collects the problems of the lists instead of raising on the
        first (``tc-clip check-data``). Stages are independent: a test-only run never reads the training
        annotations."""
        if stage == "predict":
            predict = self._predict_split(errors)
            return [predict] if predict is not None else []
        if stage == "fit":
            return self._resolve_fit(errors)
        if stage not in ("validate", "test"):
            raise ValueError(f"unknown stage {stage!r}")
        return self._resolve_eval(stage, errors)

    def splits(self, stage: str) -> list[SplitData]:
        """The resolved splits of a stage ("fit" = the training split; cached)."""
        if stage not in self._resolved:
            self._resolved[stage] = self.resolve(stage)
        return list(self._resolved[stage])

    # --- what the layers above read -----------------------------------------------------------------

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
        """One :class:`~tc_clip.data.splits.EvalSetInfo` per dataloader of ``stage`` ("validate", "test"
        or "predict"); while fitting, without the deferred novel sets (``defer_novel``)."""
        if stage not in _splits.EVAL_STAGES:
            raise ValueError(f"stage must be one of {_splits.EVAL_STAGES}, got {stage!r}")
        splits = self.splits(stage)
        return [splits[i].info() for i in self._kept(stage, splits)]

    def deferred_sets(self) -> list[EvalSetInfo]:
        """The validation sets that ``defer_novel`` leaves out while fitting (role ``"novel"``), whether
        or not a fit is running: what is left to evaluate after fit with the best-base weights."""
        if not self.defer_novel:
            return []
        return [s.info() for s in self.splits("validate") if s.role == "novel"]

    def _fitting(self) -> bool:
        return self.trainer is not None and self.trainer.state.fn == "fit"

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
            info = protocols.planned_train_info(self.protocol, self.shot, self.seed, self.train_list)
        few = self.protocol in protocols.FEW_SHOT
        return {
            "protocol": self.protocol,
            "benchmark": self.benchmark,
            "shot": info.shot if few else None,
            "seed": info.seed if few else None,
            "train_list": info.list_path,
            "train_source": info.source,
        }

    # --- Lightning --------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        stage = getattr(stage, "value", stage)  # Lightning passes a TrainerFn: "test", not "TrainerFn.TESTING"
        stages = list(_splits.STAGES) if stage is None else [stage]
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
        views, crops = (self.val_views, self.val_crops) if stage == "validate" else (self.test_views, self.test_crops)
        return VideoClipDataset(
            samples, num_frames=self.num_frames, input_size=self.input_size, train=train, views=views, crops=crops,
            flip=self.flip, strict=self.strict, return_path=stage == "predict", device_augment=self.device_augment,
            decoder=self.decoder,
        )

    def datasets(self, stage: str) -> list[VideoClipDataset]:
        """The clip datasets of ``stage`` (one per split; set up on first use), in dataloader order. The
        module's own list: a callback may replace an item before the loaders are made (the predictions
        writer leaves out the videos an interrupted run already did)."""
        if stage not in self._datasets:
            self.setup(stage)
        return self._datasets[stage]

    def workers(self) -> int:
        """``num_workers`` as a count (``"auto"``: shared among the trainer's processes on this node)."""
        return resolve_workers(self.num_workers, getattr(self.trainer, "num_devices", None))

    def loader_options(self) -> LoaderOptions:
        """The loader options as configured now (the zero-shot suite sets its members' after construction)."""
        return LoaderOptions(
            self.batch_size, self.eval_batch_size, self.workers(), self.pin_memory,
            self.persistent_workers, self.seed, self.shards_dir,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Colour augmentation and normalisation of ``uint8`` clips, batched on the device
        (:func:`tc_clip.data.gpu_augment.device_transform`; Lightning calls this hook of the data module)."""
        return device_transform(batch)

    def _check_found(self, stage: str) -> None:
        """Before a Trainer loads (not without one): a list none of whose videos exists is an error."""
        if self.trainer is not None:
            self._videos.check_found(self.splits(stage))

    def train_dataloader(self) -> DataLoader:
        self._check_found("fit")
        return make_loader(self.datasets("fit")[0], True, self.loader_options())

    def val_dataloader(self) -> list[DataLoader]:
        self._check_found("validate")
        datasets = self.datasets("validate")
        kept = self._kept("validate", self.splits("validate"))
        return [make_loader(datasets[i], False, self.loader_options()) for i in kept]

    def test_dataloader(self) -> list[DataLoader]:
        self._check_found("test")
        return [make_loader(d, False, self.loader_options()) for d in self.datasets("test")]

    def predict_dataloader(self) -> DataLoader:
        ds = self.datasets("predict")
        if not ds:
            raise ValueError(f"{type(self).__name__}: set predict_list to predict")
        return make_loader(ds[0], False, self.loader_options())


_BENCHMARKS = ("HMDB51DataModule", "UCF101DataModule", "SSv2DataModule", "Kinetics400DataModule",
               "Kinetics600DataModule", "SyntheticVideoDataModule")
__getattr__, __dir__ = moved(__name__, {
    **{name: "tc_clip.data" for name in (*_BENCHMARKS, "ZeroShotSuiteDataModule", "EvalSetInfo")},
    **{name: "tc_clip.data.splits" for name in ("SplitData", "TrainInfo", "TrainSource", "EVAL_STAGES")},
})
