"""What defines a run: the keys a resumed ``fit`` must share with its checkpoint, and a ``predict`` rerun with
the folder it continues.

The fingerprint is the resolved config, flattened to dotted keys, less what may change on resume (paths of
folders, devices, logging, the trainer's limits, the checkpoint options, loader workers), with every option
that names an existing file replaced by a hash of the file's content (list, label and name files move
freely, but an edited list is another run) and a model folder (``config.json`` + ``model.safetensors``, e.g.
``model.model_folder``) by a hash of those two files; ``fit`` adds the global batch when the trainer is built. Each
value is a JSON string, so checkpoints store the keys as plain data and a refusal can name the keys that
differ.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["FILE_HASH_LIMIT", "config_keys", "differences", "digest", "file_digest"]

#: Keys that may change on resume (fnmatch patterns over the dotted keys).
VOLATILE = (
    "config", "ckpt_path", "weights_only", "init_from", "redo", "last_every_n_steps", "checkpoint.*",
    "subcommand",
    "data.init_args.num_workers", "data.init_args.pin_memory", "data.init_args.persistent_workers",
    "data.init_args.prefetch_factor", "data.init_args.decoder", "data.init_args.cache_dir",
    "model.config.grad_checkpointing",
)
#: ``trainer.*`` keys that define a run; every other trainer option (devices, precision, limits, logging,
#: callbacks, ...) may change on resume.
TRAINER_KEYS = ("trainer.gradient_clip_val", "trainer.gradient_clip_algorithm")
#: Free when training, but a prediction's output depends on them.
PREDICT_ONLY = ("model.predict_top_k", "model.views_per_forward")

#: The files that identify a model folder (``tc_clip.model.pretrained``'s config and weights).
MODEL_FOLDER_FILES = ("config.json", "model.safetensors")

#: Files above this size are identified by size and their first and last MiB (CLIP weights, not lists).
FILE_HASH_LIMIT = 64 << 20


def file_digest(path: str | os.PathLike) -> str:
    """``sha256:<hex>`` of a file's content (size + head + tail above :data:`FILE_HASH_LIMIT`)."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size <= FILE_HASH_LIMIT:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(str(size).encode())
            h.update(f.read(1 << 20))
            f.seek(size - (1 << 20))
            h.update(f.read())
    return "sha256:" + h.hexdigest()[:32]


_DROP = object()


def _value(value: Any) -> Any:
    """A path to a file becomes its content hash, a model folder the hash of its config and weights, another
    folder is dropped (it may move)."""
    if isinstance(value, str) and value and len(value) < 4096:
        path = os.path.expanduser(value)
        if os.path.isfile(path):
            return file_digest(path)
        model_files = [os.path.join(path, name) for name in MODEL_FOLDER_FILES]
        if all(os.path.isfile(f) for f in model_files):
            return [file_digest(f) for f in model_files]
        if os.path.isdir(path):
            return _DROP
    if isinstance(value, (list, tuple)):
        return [v for v in (_value(x) for x in value) if v is not _DROP]
    return value


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_keys(config: Mapping[str, Any] | Any, subcommand: str = "fit") -> dict[str, str]:
    """The run-defining keys of a resolved config (a jsonargparse Namespace or a dict), values as JSON."""
    as_dict = config.as_dict() if hasattr(config, "as_dict") else dict(config)
    keys: dict[str, str] = {}
    for key, value in sorted(_flat(as_dict).items()):
        if any(fnmatch.fnmatchcase(key, p) for p in VOLATILE):
            continue
        if key.startswith("trainer.") and key not in TRAINER_KEYS:
            continue
        if subcommand == "fit" and key in PREDICT_ONLY:
            continue
        value = _value(value)
        if value is not _DROP:
            keys[key] = json.dumps(value, sort_keys=True, default=str)
    return keys


def digest(keys: Mapping[str, str]) -> str:
    """One short hash of the keys."""
    return hashlib.sha256(json.dumps(dict(sorted(keys.items()))).encode()).hexdigest()[:16]


def differences(mine: Mapping[str, str], theirs: Mapping[str, str], ignore: tuple[str, ...] = ()) -> list[str]:
    """``key (theirs -> mine)`` for every key that differs (or is on one side only)."""
    out = []
    for key in sorted(set(mine) | set(theirs)):
        if key in ignore or mine.get(key) == theirs.get(key):
            continue
        out.append(f"{key} ({theirs.get(key, 'unset')} -> {mine.get(key, 'unset')})")
    return out
