"""Values the ``tc-clip`` command derives from others: precision from the machine, gradient accumulation from
the global batch, and which model options a checkpoint may override."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from tc_clip.model.clip_schema import ClipConfigError, check_model_name

#: Options that may change after training: the command line wins over the checkpoint's saved value.
FREE_OPTIONS = (
    "pretrained", "release_checkpoint", "class_names", "input_size", "predict_top_k", "views_per_forward",
)
#: The training recipe: free when evaluating, but a resumed ``fit`` continues the checkpoint's.
TRAINING_OPTIONS = (
    "lr", "lr_min", "warmup_epochs", "lr_schedule", "weight_decay", "betas", "eps", "prompt_lr_mult",
    "label_smoothing", "mixup_alpha", "cutmix_alpha", "mix_switch_prob",
)
#: ``model.config`` switches that shape neither weights nor outputs.
FREE_CONFIG = ("grad_checkpointing",)


def auto_precision(accelerator: Any) -> str | None:
    """The precision for ``trainer.precision: null``: bf16-mixed on GPUs that support it, else 16-mixed (the
    release's); 32-true on CPU (and other accelerators). ``None`` for an accelerator object (Lightning decides)."""
    if not isinstance(accelerator, str) and accelerator is not None:
        return None
    name = (accelerator or "auto").lower()
    if name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def all_batches_limits(trainer: Mapping[str, Any]) -> list[str]:
    """Warnings for ``--trainer.limit_*_batches 1`` (or ``1.0``): the command line reads both as the float 1.0,
    which Lightning takes as 100 % - every batch, not one. ``None`` (not given) is not warned about."""
    out = []
    for name in LIMITS:
        value = trainer.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) == 1.0:
            out.append(
                f"--trainer.{name} {value} means EVERY batch (1 and 1.0 are read as 100 %), not one batch. For a "
                f"smoke test use --trainer.fast_dev_run true (one batch of each stage), or an integer above 1 "
                f"(--trainer.{name} 2) to count batches"
            )
    return out


def accumulation_for(global_batch: int, per_device: int, world_size: int, given: int | None = None) -> int:
    """Gradient accumulation that makes ``per_device × world_size × accumulation == global_batch``.

    Raises ValueError naming the values when the world cannot divide the global batch, or when an explicit
    ``trainer.accumulate_grad_batches`` (other than 1) contradicts it.
    """
    if global_batch < 1 or per_device < 1:
        raise ValueError(f"global_batch_size ({global_batch}) and data.batch_size ({per_device}) must be >= 1")
    per_step = per_device * world_size
    if global_batch % per_step:
        raise ValueError(
            f"global_batch_size {global_batch} is not a multiple of data.batch_size {per_device} x {world_size} "
            f"process(es) = {per_step}: choose a data.batch_size that divides {global_batch // world_size or 1}"
        )
    accumulate = global_batch // per_step
    if given not in (None, 1, accumulate):
        raise ValueError(
            f"trainer.accumulate_grad_batches {given} contradicts global_batch_size {global_batch} "
            f"(= {per_device} per device x {world_size} process(es) x {accumulate}); drop one of them"
        )
    return accumulate


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return a == b


def checkpoint_model_options(
    current: Mapping[str, Any], defaults: Mapping[str, Any], saved: Mapping[str, Any], resuming_fit: bool
) -> tuple[dict[str, Any], list[str]]:
    """Which ``model.*`` values to use with ``--ckpt_path`` (flat dotted keys, e.g. ``config.n_ctx``).

    Free options keep the current value (command line / config). The architecture (``model_name``,
    ``config.*``) and, when resuming ``fit``, the training recipe come from the checkpoint: a current value
    that differs from both the default and the checkpoint is a contradiction, returned by name.
    ``config.num_frames`` follows the data (the model is frame-count agnostic) unless the positional
    embedding is per frame (``"joint"``). Returns ``(updates to apply, contradictions)``.
    """
    cur, dflt, ckpt = _flat(current), _flat(defaults), _flat(saved)
    updates: dict[str, Any] = {}
    errors: list[str] = []
    joint = ckpt.get("config.positional_embedding") == "joint"
    for key, value in ckpt.items():
        if key.startswith("_") or key in FREE_OPTIONS or key.removeprefix("config.") in FREE_CONFIG:
            continue
        if key in TRAINING_OPTIONS and not resuming_fit:
            continue
        if key not in cur and key not in dflt:
            continue
        now = cur.get(key, dflt.get(key))
        if _same(now, value):
            continue
        if key == "model_name":  # data from a file: never a name open_clip would fetch (hf-hub:...)
            try:
                check_model_name(value)
            except ClipConfigError as err:
                errors.append(f"the checkpoint's {err.under('model_name')}")
                continue
        if key == "config.num_frames":
            if joint:
                errors.append(f"data.num_frames {now} (model.config.num_frames) but the checkpoint's model has "
                              f"{value} frames with per-frame positional embeddings: pass --data.num_frames {value}")
            continue
        if key in dflt and _same(now, dflt[key]):
            updates[key] = value
        else:
            errors.append(f"model.{key}: {now!r} contradicts the checkpoint's {value!r}")
    return updates, errors
