"""The benchmarks' own layouts: HMDB-51, UCF-101, Something-Something v2, Kinetics-400/600, and a synthetic set.

Each module is a :class:`~tc_clip.data.datamodule.VideoDataModule` that declares what differs and
nothing else: its default ``root`` (a constructor default, so the CLI shows it), the folders below
``root`` where its videos and annotations are looked for (class attributes, overridden by
``videos_dir`` / ``splits_dir`` / ``annotations_dir``), and its annotation reader (the
``_official_train`` / ``_official_evals`` hooks, built on :mod:`tc_clip.data.annotations`). List-file
arguments override the official splits (e.g. the public few-shot lists; their paths are relative to
``videos_dir``, else ``root``); see :class:`~tc_clip.data.datamodule.VideoDataModule` for the rest.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from tc_clip.data import annotations as ann
from tc_clip.data import synthetic
from tc_clip.data.annotations import Sample
from tc_clip.data.datamodule import VideoDataModule
from tc_clip.data.errors import SplitFilesNotFoundError
from tc_clip.data.protocols import name_key
from tc_clip.data.splits import SplitData

__all__ = [
    "HMDB51DataModule",
    "Kinetics400DataModule",
    "Kinetics600DataModule",
    "SSv2DataModule",
    "SyntheticVideoDataModule",
    "UCF101DataModule",
]


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
            ann.report(errors, f"{s.where}: class {name!r} is not in the label file {labels}")
            continue
        samples.append(Sample(s.path, found, s.where))
    return SplitData(split.name, samples, names, group=split.group, role=split.role)


class _BenchmarkDataModule(VideoDataModule):
    """A benchmark below ``root``: sets named ``<benchmark>/...``, list paths relative to ``videos_dir``
    (default: the benchmark's videos folder, else ``root``)."""

    _is_benchmark = True
    #: folders below ``root`` ("" is ``root``) where the videos are looked for, in order
    video_folders: tuple[str, ...] = ("",)

    def __init__(self, videos_dir: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.videos_dir = videos_dir

    def _list_root(self) -> str | None:
        return self.videos_dir or self.root

    def _find(self, folders: Sequence[str], override: str | None = None) -> Path:
        """``override``, else the first of ``folders`` below ``root`` that exists, else the first."""
        root = Path(self.root or ".")
        return _first_existing(*(root / f for f in folders), override=override)


class _SplitsDataModule(_BenchmarkDataModule):
    """HMDB-51 and UCF-101: three official splits, ``split`` picks one; ``videos_dir`` / ``splits_dir``
    override where the videos and split files are looked for."""

    num_splits = 3
    title = "the dataset"
    #: the official split files, as their error names them
    split_files = "the split files"
    #: the prefix of this module's options on the command line (a zero-shot suite's member: ``data.hmdb51.``)
    option_prefix = "data."
    _numbered_splits = True
    #: folders below ``root`` where the split files are looked for, in order
    split_folders: tuple[str, ...] = ("splits", "annotations", "")

    def __init__(self, split: int = 1, videos_dir: str | None = None, splits_dir: str | None = None, **kwargs):
        super().__init__(videos_dir=videos_dir, **kwargs)
        if split not in range(1, self.num_splits + 1):
            raise ValueError(f"{self.title} has splits 1-{self.num_splits}, got {split}")
        self.split = split
        self.splits_dir = splits_dir

    @property
    def _split_number(self) -> int:
        return self.split

    def _read(self, split: int, train: bool, errors: list[str] | None) -> tuple[list[Sample], list[str]]:
        """The samples and class names of official split ``split`` (training or test list)."""
        raise NotImplementedError

    def _official(self, split: int, train: bool, errors: list[str] | None, stage: str = "fit") -> SplitData:
        try:
            samples, names = self._read(split, train, errors)
        except FileNotFoundError as err:
            raise SplitFilesNotFoundError(self._no_split_files(err, stage)) from err
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
            return [self._official(k, False, errors, stage) for k in range(1, self.num_splits + 1)]
        return [self._official(self.split, False, errors, stage)]

    def _no_split_files(self, err: FileNotFoundError, stage: str) -> str:
        """What is missing, where it was looked for, and the list options that serve instead."""
        looked = self.splits_dir or " or ".join(str(Path(self.root or ".") / f) for f in self.split_folders if f)
        p = f"--{self.option_prefix}"
        if stage == "fit":
            route = f"{p}train_list LIST {p}labels LABELS.csv"
        else:
            option = f"{p}{'test' if stage == 'test' else 'val'}_list"
            lists = "'[val1.txt, val2.txt, val3.txt]'" if self.protocol == "zero_shot" else "LIST"
            route = f"{option} {lists} {p}labels LABELS.csv"
        return (
            f"{self.title}: the official split files ({self.split_files}) are not in {looked} ({err}). Put "
            f"them there or point {p}splits_dir at them; or give the {stage} lists instead of them: {route} "
            "(the public list files and their label CSV, paths relative to the videos folder)"
        )


class HMDB51DataModule(_SplitsDataModule):
    """HMDB-51 as distributed: ``videos/<class>/<video>.avi`` (default: ``root`` itself when it holds
    the class folders, else ``root/videos`` or ``root/hmdb51``) and the split files
    ``<class>_test_split<N>.txt`` (default: ``root/testTrainMulti_7030_splits`` or ``root/splits``).
    ``split`` (1-3) picks the train/test split; ``protocol="zero_shot"`` evaluates all three test splits
    (``hmdb51/split1..3``, group ``"hmdb51"``). See :class:`VideoDataModule` for the other arguments."""

    dataset_name = "hmdb51"
    title = "HMDB-51"
    split_files = "testTrainMulti_7030_splits/<class>_test_split<N>.txt"
    split_folders = ("testTrainMulti_7030_splits", "splits", "annotations", "")
    #: the first of these that holds the class folders; ``videos`` when none does
    video_folders = ("", "videos", "hmdb51", "hmdb51_org")

    def __init__(self, root: str = "data/hmdb51", **kwargs):
        super().__init__(root=root, **kwargs)

    def _read(self, split, train, errors):
        samples, names = ann.read_hmdb51(self._find(self.split_folders, self.splits_dir), ".", split, train, errors)
        if self.videos_dir:
            videos = Path(self.videos_dir)
        else:
            root = Path(self.root or ".")
            candidates = [root / f for f in self.video_folders]
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
    split_files = "ucfTrainTestlist/classInd.txt, trainlist0N.txt, testlist0N.txt"
    split_folders = ("ucfTrainTestlist", "splits", "annotations", "")
    video_folders = ("UCF-101", "")

    def __init__(self, root: str = "data/ucf101", **kwargs):
        super().__init__(root=root, **kwargs)

    def _read(self, split, train, errors):
        splits_dir = self._find(self.split_folders, self.splits_dir)
        return ann.read_ucf101(splits_dir, self._find(self.video_folders, self.videos_dir), split, train, errors)


class SSv2DataModule(_BenchmarkDataModule):
    """Something-Something v2 as distributed: ``labels.json``, ``train.json``, ``validation.json`` (and
    ``test.json``) in ``annotations_dir`` (default: ``root/labels``, else ``root``) and ``<id>.webm``
    videos in ``videos_dir`` (default: ``root/20bn-something-something-v2``, else ``root``). Class names
    are the templates without brackets. Horizontal flipping is off by default (it changes the meaning of
    left/right classes). See :class:`VideoDataModule` for the other arguments."""

    dataset_name = "ssv2"
    annotation_folders = ("labels", "annotations", "")
    video_folders = ("20bn-something-something-v2", "videos", "")

    def __init__(
        self,
        root: str = "data/ssv2",
        videos_dir: str | None = None,
        annotations_dir: str | None = None,
        *,
        flip: bool = False,
        **kwargs,
    ):
        super().__init__(root=root, videos_dir=videos_dir, flip=flip, **kwargs)
        self.annotations_dir = annotations_dir

    def _official(self, split_file: str, name: str, errors) -> SplitData:
        ann_dir = self._find(self.annotation_folders, self.annotations_dir)
        videos = self._find(self.video_folders, self.videos_dir)
        samples, names = ann.read_ssv2(ann_dir / "labels.json", ann_dir / split_file, videos, errors)
        return _relabel(SplitData(name, samples, names), self.labels, errors)

    def _official_train(self, errors):
        return self._official("train.json", "ssv2_train", errors)

    def _official_evals(self, stage, errors):
        return [self._official("validation.json", "ssv2_val", errors)]


class Kinetics400DataModule(_BenchmarkDataModule):
    """Kinetics as distributed: CSVs ``label,youtube_id,time_start,time_end,split`` (``train.csv``,
    ``validate.csv`` or ``val.csv``, ``test.csv`` in ``annotations_dir``, default ``root/annotations``,
    else ``root``) and videos named ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (or ``<youtube_id>.<ext>``)
    anywhere below ``videos_dir`` (default ``root``). Rows whose video is missing are dropped with one
    warning (every Kinetics copy lacks some videos). Class ids: the sorted label names, or ``labels``.
    For zero-shot evaluation on the K-600 novel classes pass the split lists as ``test_list`` /
    ``test_labels``. See :class:`VideoDataModule` for the other arguments."""

    dataset_name = "k400"
    annotation_folders = ("annotations", "")
    #: the validation CSV's names, in the order they are looked for
    val_files = ("validate.csv", "val.csv", "valid.csv")

    def __init__(
        self,
        root: str = "data/kinetics400",
        videos_dir: str | None = None,
        annotations_dir: str | None = None,
        **kwargs,
    ):
        super().__init__(root=root, videos_dir=videos_dir, **kwargs)
        self.annotations_dir = annotations_dir
        self._video_index: dict[str, str] | None = None

    def _official(self, names: Sequence[str], split_name: str, errors) -> SplitData:
        root = Path(self.root or ".")
        ann_dir = self._find(self.annotation_folders, self.annotations_dir)
        csv_path = _first_existing(*(ann_dir / n for n in names))
        if self._video_index is None:
            self._video_index = ann.index_videos(self.videos_dir or root)
        class_names = ann.read_labels_csv(self.labels, errors) if self.labels else None
        if class_names is None:  # class ids: the sorted names of the training CSV
            train_csv = _first_existing(ann_dir / "train.csv", csv_path)
            _, class_names, _ = ann.read_kinetics_csv(train_csv, {}, None, errors)
        samples, class_names, missing = ann.read_kinetics_csv(csv_path, self._video_index, class_names, errors)
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
        return [self._official(self.val_files, "val", errors)]


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
        num_workers: int | Literal["auto"] = 2,
        test_views: int = 1,
        **kwargs,
    ):
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
        root = Path(cache_dir).expanduser() / synthetic.dataset_key(**gen_kwargs)
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
        synthetic.generate(self.root, **self.gen_kwargs)

    def resolve(self, stage: str, errors: list[str] | None = None) -> list[SplitData]:
        self.prepare_data()  # idempotent; also covers use without a Trainer
        return super().resolve(stage, errors)
