"""Streaming shards: a data module's splits packed into litdata chunks of encoded videos.

Many small files on a shared filesystem or an object store starve multi-node training; a few large
chunks stream well. :func:`pack` writes every video of a split, as its encoded bytes with its label,
path and position in the split, into ``<output_dir>/<stage>/<k>/`` (litdata's ``index.json`` and
``chunk-*.bin``) and describes the sets in ``<output_dir>/tc_clip_shards.json``. A data module with
``shards_dir`` then reads its splits from there (:func:`tc_clip.data.loaders.make_loader` calls
:func:`streaming_loader`): the clips are decoded in the loader workers with the same sampling and
augmentation as from files; litdata splits the items across DDP ranks and workers, and its
:class:`~litdata.StreamingDataLoader` saves its position for a mid-epoch resume. Packing asks of the
data module only its ``splits(stage)`` (:class:`~tc_clip.data.splits.SplitSource`). A set is found
by a fingerprint of its ``(path, label)`` list, so shards packed from another split are never used
for this one.

Only the plain value formats (bytes, int, str) are read: a shard whose index declares anything else
(such as pickle) is refused before litdata opens it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # never ask PyPI for a newer litdata (offline runs)

try:
    from litdata import StreamingDataLoader, StreamingDataset
    from litdata.streaming.serializers import BytesSerializer, IntegerSerializer, StringSerializer
    from litdata.streaming.writer import BinaryWriter
except ImportError as e:  # an optional extra
    raise ImportError("streaming shards need litdata: pip install 'tc-clip[shards]' (or litdata)") from e

from tc_clip.data.annotations import Sample  # noqa: E402
from tc_clip.data.dataset import VideoClipDataset, make_item, worker_init_fn  # noqa: E402
from tc_clip.data.decoding import VideoDecodeError  # noqa: E402
from tc_clip.data.splits import SplitSource  # noqa: E402

__all__ = [
    "META_FILE", "fingerprint", "find_set", "pack", "ShardedClipDataset", "StreamingDataLoader", "streaming_loader"
]

log = logging.getLogger(__name__)

META_FILE = "tc_clip_shards.json"
_FORMATS = {"bytes", "int", "str"}
_STAGES = {"fit": ("fit", "validate"), "validate": ("validate",), "test": ("test",)}


def fingerprint(samples: Sequence[Sample]) -> str:
    """SHA-256 of the split's ``path<TAB>label`` lines, in order."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.path}\t{s.label}\n".encode())
    return h.hexdigest()


def _plain_serializers() -> dict[str, Any]:
    """Plain values first: litdata would otherwise store a video's bytes in its video format and the
    content of the file a path string names instead of the string."""
    return {"bytes": BytesSerializer(), "str": _PathString(), "int": IntegerSerializer()}


class _PathString(StringSerializer):
    """litdata's string serializer, also for strings that name an existing file."""

    def can_serialize(self, data: Any) -> bool:
        return isinstance(data, str)


def pack(
    datamodule: SplitSource, output_dir: str | os.PathLike, stage: str = "fit", chunk_bytes: str = "256MB"
) -> dict[str, Any]:
    """Pack the splits of ``stage`` (``fit``: the training split and the validation sets; ``validate``;
    ``test``) of ``datamodule`` (a :class:`~tc_clip.data.VideoDataModule`, or anything with its
    ``splits(stage)``) into litdata shards under ``output_dir``. A set already packed there
    with the same fingerprint is kept. Returns ``{"output_dir", "sets": [{"stage", "name", "dir",
    "videos", "bytes", "fingerprint"}]}``. A missing video is an error naming it (and its list line).
    """
    if stage not in _STAGES:
        raise ValueError(f"pack: stage must be one of {sorted(_STAGES)}, got {stage!r}")
    out = Path(output_dir)
    meta_path = out / META_FILE
    meta = _read_meta(meta_path) if meta_path.exists() else {"version": 1, "sets": {}}
    packed = []
    for st in _STAGES[stage]:
        for k, split in enumerate(datamodule.splits(st)):
            key, fp = f"{st}/{k:02d}", fingerprint(split.samples)
            target = out / st / f"{k:02d}"
            old = meta["sets"].get(key)
            if old and old["fingerprint"] == fp and (target / "index.json").exists():
                packed.append({"stage": st, **old, "dir": str(target)})
                continue
            missing = [s for s in split.samples if not os.path.isfile(s.path)]
            if missing:
                where = ", ".join(f"{s.path} ({s.where})" if s.where else s.path for s in missing[:5])
                raise FileNotFoundError(f"pack: {len(missing)} videos of '{split.name}' not found: {where}")
            if target.exists():
                for f in target.iterdir():
                    f.unlink()
            target.mkdir(parents=True, exist_ok=True)
            writer = BinaryWriter(str(target), chunk_bytes=chunk_bytes, serializers=_plain_serializers())
            total = 0
            for i, s in enumerate(split.samples):
                data = Path(s.path).read_bytes()
                total += len(data)
                writer[i] = {"video": data, "label": int(s.label), "path": str(s.path), "index": i}
            writer.done()
            writer.merge()
            entry = {"name": split.name, "videos": len(split.samples), "bytes": total, "fingerprint": fp}
            meta["sets"][key] = entry
            packed.append({"stage": st, **entry, "dir": str(target)})
            log.info("packed %d videos (%d bytes) of '%s' into %s", len(split.samples), total, split.name, target)
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return {"output_dir": str(out), "sets": packed}


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
        assert isinstance(meta.get("sets"), dict)
    except (ValueError, AssertionError) as e:
        raise ValueError(f"{path}: not a tc_clip shards description ({e})") from e
    return meta


def _check_index(folder: Path) -> None:
    """Refuse shards whose items would be decoded by anything but the plain value formats."""
    index = folder / "index.json"
    try:
        config = json.loads(index.read_text())["config"]
        formats = set(config["data_format"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{index}: not a litdata shard index ({e})") from e
    if not formats <= _FORMATS or config.get("encryption") or config.get("compression"):
        raise ValueError(
            f"{index}: data formats {sorted(formats)} (encryption {config.get('encryption')}, compression "
            f"{config.get('compression')}); tc_clip shards hold only {sorted(_FORMATS)} and are not read otherwise"
        )


def find_set(shards_dir: str | os.PathLike, samples: Sequence[Sample]) -> Path | None:
    """The packed set of ``shards_dir`` whose fingerprint is that of ``samples``, else None."""
    meta_path = Path(shards_dir) / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"shards_dir {shards_dir}: no {META_FILE} (pack the data with `tc-clip pack`)")
    fp = fingerprint(samples)
    for key, entry in _read_meta(meta_path)["sets"].items():
        if entry.get("fingerprint") == fp:
            folder = Path(shards_dir) / key
            _check_index(folder)
            return folder
    return None


class ShardedClipDataset(StreamingDataset):
    """Clips streamed from a packed set (litdata's ``StreamingDataset``): each item's encoded bytes are
    decoded in the worker and go through ``clips``' sampling and transforms, so items are those of
    :class:`~tc_clip.data.dataset.VideoClipDataset` from files (``index`` is the position in the split).
    An unreadable video is handled as there (replaced by a random item in training, left out of the
    metric in evaluation)."""

    def __init__(
        self, folder: str | os.PathLike, clips: VideoClipDataset, shuffle: bool, seed: int, drop_last: bool | None
    ):
        _check_index(Path(folder))
        super().__init__(input_dir=str(folder), shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.folder = str(folder)
        self.clips = clips

    def _decode(self, raw: dict[str, Any]) -> tuple[torch.Tensor, dict | None, str]:
        name = f"{raw['path']} (shards {self.folder})"
        return self.clips.transform_decoded(self.clips.decode(bytes(raw["video"]), name=name))

    def __getitem__(self, index):
        raw = first = super().__getitem__(index)
        skipped = 0
        while True:
            try:
                video, params, backend = self._decode(raw)
                break
            except (VideoDecodeError, OSError) as e:
                if self.clips.strict:
                    raise
                if not self.clips.train:  # left out of the metric, as from files
                    return self.clips.unreadable_item(int(first["index"]), e)
                self.clips.warn_unreadable(raw["path"], e, "replaced by another training video")
                skipped += 1
                n = len(self)
                if skipped > self.clips.max_retries or n < 2:
                    raise RuntimeError(f"{skipped} videos in a row could not be read (last: {raw['path']})") from e
                raw = super().__getitem__(random.randrange(n))
        path = raw["path"] if self.clips.return_path else None
        return make_item(video, raw["label"], int(first["index"]), skipped, params, backend, path)


def streaming_loader(
    shards_dir: str | os.PathLike,
    dataset: VideoClipDataset,
    train: bool,
    *,
    batch_size: int,
    num_workers: int,
    pin_memory: bool,
    persistent_workers: bool,
    drop_last: bool,
    seed: int,
) -> StreamingDataLoader | None:
    """A :class:`~litdata.StreamingDataLoader` over the packed set of ``dataset``'s samples in
    ``shards_dir``, or None for an evaluation set that was not packed (it is read from files). Training
    data must be packed. Training shuffles (seeded with ``seed``, a new order every epoch) and, under DDP,
    gives every rank the same number of items (litdata drops the rest); evaluation keeps every item."""
    folder = find_set(shards_dir, dataset.samples)
    if folder is None:
        if train:
            raise ValueError(
                f"shards_dir {shards_dir}: the training split ({len(dataset.samples)} videos) is not "
                f"packed there (or was packed from a different list); run `tc-clip pack` for this data"
            )
        log.info("shards_dir %s: evaluation set not packed, reading its files", shards_dir)
        return None
    streaming = ShardedClipDataset(folder, dataset, shuffle=train, seed=seed, drop_last=None if train else False)
    # litdata's StreamingDataset is an IterableDataset with a __len__ that already accounts for workers
    warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
    return StreamingDataLoader(
        streaming,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers,
        worker_init_fn=worker_init_fn,
        drop_last=drop_last,
    )
