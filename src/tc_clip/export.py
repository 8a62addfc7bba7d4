"""``tc-clip export``: any model file this project reads -> a model folder (:mod:`tc_clip.model.pretrained`),
optionally with an ONNX graph (:mod:`tc_clip.model.onnx`).

Sources: a fit checkpoint (``best.ckpt``/``last.ckpt``, optionally with WiSE-FT at a ratio baked in, given
CLIP's weights), a :meth:`TCCLIP.save` file, a checkpoint released by the TC-CLIP authors plus CLIP's
weights, or a model folder (to re-export, e.g. to ONNX). Every file is read as data. ``config.json``
records where the weights came from; for a checkpoint inside a ``tc-clip fit`` run folder also the
training protocol and data (``config.yaml``) and the evaluation figures of that checkpoint
(``eval_results.jsonl``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tc_clip._hashing import file_sha256
from tc_clip.model.serialization import CheckpointError

if TYPE_CHECKING:
    from tc_clip.model.tcclip import TCCLIP

__all__ = ["SOURCE_KINDS", "export_model", "run_provenance", "source_kind"]

SOURCE_KINDS = ("folder", "lightning", "tcclip", "release")
#: run options worth a line in the model card (paths are reduced to file names)
_TRAINING_KEYS = ("protocol", "benchmark", "shot", "seed", "split", "num_frames", "input_size", "batch_size",
                  "num_classes", "val_views", "test_views", "crops")
_MODEL_KEYS = ("model_name", "pretrained", "release_checkpoint", "lr", "lr_min", "warmup_epochs", "lr_schedule",
               "weight_decay", "prompt_lr_mult", "label_smoothing", "mixup_alpha", "cutmix_alpha")


def source_kind(path: str | os.PathLike) -> str:
    """Which of :data:`SOURCE_KINDS` ``path`` is (read as data; a wrong file raises naming it)."""
    from tc_clip.model.pretrained import is_pretrained_folder
    from tc_clip.model.serialization import safe_load

    path = Path(path).expanduser()
    if path.is_dir():
        if is_pretrained_folder(path):
            return "folder"
        raise CheckpointError(path, "is a folder without config.json: not a tc-clip model folder")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    blob = safe_load(path, mmap=True)
    if isinstance(blob, dict) and "hyper_parameters" in blob and "state_dict" in blob:
        return "lightning"
    if isinstance(blob, dict) and {"state_dict", "config", "clip_cfg"} <= blob.keys():
        return "tcclip"
    if isinstance(blob, dict) and isinstance(blob.get("model"), dict):
        return "release"
    raise CheckpointError(path, "not a Lightning checkpoint, a TCCLIP.save file, a release checkpoint or a "
                                "model folder")


def _plain(value: Any, key: str) -> Any:
    if isinstance(value, str) and any(part in key for part in ("pretrained", "checkpoint")):
        return Path(value).name  # where a file sat on the training machine is nobody's business
    return value


def _training_section(config: dict[str, Any]) -> dict[str, Any]:
    """The protocol and data of a run's ``config.yaml``, as flat ``name: value`` lines."""
    out: dict[str, Any] = {}
    data = config.get("data") or {}
    if isinstance(data, dict):
        if data.get("class_path"):
            out["data"] = data["class_path"]
        init = data.get("init_args") or {}
        out.update({f"data.{k}": init[k] for k in _TRAINING_KEYS if isinstance(init, dict) and init.get(k) is not None})
    model = config.get("model") or {}
    if isinstance(model, dict):
        out.update({f"model.{k}": _plain(model[k], k) for k in _MODEL_KEYS if model.get(k) is not None})
        if not model.get("pretrained") and not model.get("release_checkpoint"):
            out["model.pretrained"] = "none: trained from a random initialisation"
    trainer = config.get("trainer") or {}
    if isinstance(trainer, dict):
        out.update({f"trainer.{k}": trainer[k] for k in ("max_epochs", "precision") if trainer.get(k) is not None})
    if config.get("global_batch_size") is not None:
        out["global_batch_size"] = config["global_batch_size"]
    return {k: v for k, v in out.items() if isinstance(v, (str, int, float, bool))}


def _evaluation_of(records: Sequence[dict[str, Any]], ckpt: Path, epoch: Any) -> dict[str, Any] | None:
    """The figures measured with this checkpoint: its last test record, else the last val record of the
    epoch it was saved at; None when the run holds neither (no figure of other weights is shown)."""
    tests = [r for r in records if r.get("stage") == "test" and r.get("ckpt_path")
             and Path(str(r["ckpt_path"])).name == ckpt.name]
    vals = [r for r in records if r.get("stage") == "val" and epoch is not None and r.get("epoch") == epoch]
    record, why = (tests[-1], f"tested with {ckpt.name}") if tests else \
        (vals[-1], f"validated at the epoch {ckpt.name} was saved") if vals else (None, "")
    if record is None:
        return None
    sets = [{k: s.get(k) for k in ("name", "top1", "top5", "videos")} for s in record.get("sets") or []
            if isinstance(s, dict)]
    return {"stage": record.get("stage"), "epoch": record.get("epoch"), "selected": why, "sets": sets}


def run_provenance(ckpt: Path, blob: dict[str, Any]) -> dict[str, Any]:
    """What a fit checkpoint says about its run: epoch, step, run folder, training and evaluation."""
    from tc_clip.results import read_eval_records, read_run_config

    prov: dict[str, Any] = {"epoch": blob.get("epoch"), "global_step": blob.get("global_step")}
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    prov["run"] = run.name if run.is_absolute() else str(run)
    try:
        config = read_run_config(run) or read_run_config(ckpt.parent)
        records = read_eval_records(run)
    except ValueError as err:  # a broken run file makes the card poorer, not the export impossible
        prov["run_files_unreadable"] = str(err)
        return prov
    training = _training_section(config)
    if training:
        prov["training"] = training
    evaluation = _evaluation_of(records, ckpt, blob.get("epoch"))
    if evaluation:
        prov["evaluation"] = evaluation
    return prov


def _load(path: Path, kind: str, clip_weights: str | None, model_name: str, kwargs: dict[str, Any]) -> TCCLIP:
    from tc_clip.inference import load_model

    if kind == "release" and clip_weights is None:
        raise ValueError(f"{path} is a checkpoint released by the TC-CLIP authors: give CLIP's weights "
                         "(--clip_weights /path/to/ViT-B-16.pt), which provide the token embedding the release lacks")
    if kind == "release":
        return load_model(path, clip_weights=clip_weights, model_name=model_name, **kwargs)
    return load_model(path, **kwargs)


def export_model(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    clip_weights: str | os.PathLike | None = None,
    wise_ratio: float | None = None,
    class_names: Sequence[str] | None = None,
    model_name: str = "ViT-B-16",
    onnx: bool = False,
    overwrite: bool = False,
    **kwargs: Any,
) -> Path:
    """Write the model folder of ``source`` into ``output_dir``; returns it.

    ``clip_weights``: CLIP's weights, needed for a release checkpoint and for WiSE-FT. ``wise_ratio``
    (α in [0, 1]): bake ``(1 - α)·CLIP + α·fine-tuned`` into the weights (:mod:`tc_clip.model.wise`).
    ``class_names`` replace the saved vocabulary. ``onnx`` also writes ``model.onnx`` (fixed vocabulary).
    ``kwargs`` go to :func:`tc_clip.inference.load_model` (e.g. ``pretrained=`` for a checkpoint whose
    CLIP file moved). An existing non-empty ``output_dir`` is refused unless ``overwrite``.
    """
    from tc_clip.model.pretrained import save_pretrained
    from tc_clip.model.serialization import safe_load

    path = Path(source).expanduser()
    out = Path(output_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty: choose a new folder or pass overwrite")
    if out.resolve() == path.resolve():
        raise ValueError(f"{out} is the source itself: export into another folder")
    kind = source_kind(path)
    model = _load(path, kind, None if clip_weights is None else str(clip_weights), model_name, kwargs)
    prov: dict[str, Any] = dict(getattr(model, "provenance", None) or {}) if kind == "folder" else {}
    if kind != "folder":
        prov.update(source_kind=kind, source=path.name, source_sha256=file_sha256(path))
    if kind == "lightning":
        prov["checkpoint"] = path.name
        prov.update(run_provenance(path, safe_load(path, mmap=True)))
    elif kind == "release":
        prov.update(release_file=path.name, clip_weights=Path(str(clip_weights)).name)
    if wise_ratio is not None:
        model = _ensembled(model, clip_weights, wise_ratio, model_name)
        prov["wise_ft"] = {"ratio": float(wise_ratio), "clip_weights": Path(str(clip_weights)).name,
                           "clip_weights_sha256": file_sha256(Path(str(clip_weights)).expanduser())}
        if prov.pop("evaluation", None) is not None:
            prov["evaluation_note"] = "the run's figures are of the weights before WiSE-FT; none shown"
    if class_names is not None:
        model.set_class_names(list(class_names))
    model.provenance = prov
    save_pretrained(model, out, prov)
    if onnx:
        _add_onnx(model, out)
    return out


def _ensembled(model: TCCLIP, clip_weights: Any, ratio: float, model_name: str) -> TCCLIP:
    from tc_clip.model import wise as ensemble

    ratio = ensemble.check_alpha(ratio)
    if clip_weights is None:
        raise ValueError("WiSE-FT needs the CLIP weights the model was fine-tuned from (--clip_weights ViT-B-16.pt)")
    clip_state = ensemble.load_clip_state(clip_weights, model=model, model_name=model_name)
    mixed = ensemble.ensembled_copy(model, clip_state, ratio)
    return mixed.eval()


def _add_onnx(model: TCCLIP, out: Path) -> None:
    """Write ``model.onnx`` next to the folder's files and record it in ``config.json``."""
    import json

    from tc_clip.model.onnx import ONNX_FILE, export_onnx
    from tc_clip.model.pretrained import CONFIG_FILE

    info = export_onnx(model, out / ONNX_FILE)
    config_path = out / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["onnx"] = info
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def check_onnx(folder: str | os.PathLike, batch: int = 2, seed: int = 0) -> float:
    """Run the folder's ``model.onnx`` with onnxruntime and the PyTorch model on one random batch; returns
    the largest logit difference (raises if the top-1 classes differ)."""
    from tc_clip.model import TCCLIP
    from tc_clip.model.onnx import ONNX_FILE, onnx_logits
    from tc_clip.model.pretrained import load_folder

    model = load_folder(folder, TCCLIP)
    size = model.visual.image_size
    video = torch.randn(batch, model.config.num_frames, 3, size[0], size[1],
                        generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(video)
    got = onnx_logits(Path(folder) / ONNX_FILE, video)
    if not torch.equal(got.argmax(-1), expected.argmax(-1)):
        raise ValueError(f"{folder}/{ONNX_FILE}: its top-1 classes differ from PyTorch's")
    return float((got - expected).abs().max())
