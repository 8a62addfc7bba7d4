"""Inference helpers for notebooks and scripts: load a model, read a video, get the top-k classes.

>>> from tc_clip import inference
>>> model = inference.load_model("runs/demo/version_0/checkpoints/last.ckpt")   # or a .pth, or None
>>> video, frames = inference.read_clip("my_video.mp4", num_frames=model.config.num_frames,
...                                     size=model.visual.image_size[0])
>>> inference.predict(model, video, ["juggling balls", "riding a bike", "cooking"], top_k=3)
[('juggling balls', 0.71), ('cooking', 0.18), ('riding a bike', 0.11)]

Models come from

* a checkpoint released by the TC-CLIP authors plus OpenAI's CLIP weights (:func:`load_model` with
  ``clip_weights=...``, or :meth:`TCCLIP.from_release_checkpoint`);
* one of this project's files: :meth:`TCCLIP.save` files or Lightning ``.ckpt`` files written by
  ``tc-clip fit`` (:func:`load_model`);
* nothing: :func:`tiny_model` builds a small random TC-CLIP (64x64 frames), :func:`load_demo_model` uses
  the checkpoint of ``make demo`` when one is found and falls back to a tiny random model otherwise.

Videos are read with the data pipeline of :mod:`tc_clip.data` (PyAV decoding, centred TSN sampling,
resize + centre crop, the release's normalisation), exactly as in evaluation with one view.
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tc_clip.model import TCCLIP, CheckpointError, TCCLIPConfig, safe_load

__all__ = [
    "DEMO_CHECKPOINT_ENV",
    "LoadedModel",
    "explain",
    "find_demo_checkpoint",
    "frame_averaging_baseline",
    "load_demo_model",
    "load_model",
    "predict",
    "read_clip",
    "synthetic_video",
    "tiny_model",
]

#: Environment variable naming the demo checkpoint; set it to ``none`` (or empty) to force the fallback.
DEMO_CHECKPOINT_ENV = "TC_CLIP_DEMO_CHECKPOINT"


# ------------------------------------------------------------------------------------------ models
def tiny_model(
    class_names: Sequence[str] | None = None,
    num_frames: int = 8,
    seed: int | None = 0,
    config: TCCLIPConfig | None = None,
    **overrides: Any,
) -> TCCLIP:
    """A small random TC-CLIP (the demo's architecture: 3-layer ViT, 64x64 frames, 8x8 patches, 16
    context tokens), in eval mode. Its predictions are meaningless; it is for trying the API offline.

    ``overrides`` set :class:`TCCLIPConfig` fields (e.g. ``use_tc=False``); a full ``config`` replaces the
    demo's switches (``num_frames`` is then ignored). ``seed`` makes the random weights reproducible
    without touching the global RNG (``None``: draw from the global RNG).
    """
    base = dict(num_frames=num_frames, num_context_tokens=16, merge_step=40)
    if config is not None:
        base = {}
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = TCCLIP.from_clip("tiny", class_names=class_names, config=config, **{**base, **overrides})
    else:
        model = TCCLIP.from_clip("tiny", class_names=class_names, config=config, **{**base, **overrides})
    return model.eval()


def _offline_hparams(path: Path, saved: Any, given: dict[str, Any]) -> dict[str, Any]:
    """What to pass ``load_from_checkpoint`` besides ``given`` so that the checkpoint's own hyper-parameters
    build the model without the network: its ``model_name`` must be an architecture a file may name
    (:func:`~tc_clip.model.clip_schema.check_model_name`), and a hub tag in its ``pretrained`` is not
    fetched (the weights are in the checkpoint; the architecture the tag implies is kept)."""
    from tc_clip.model.clip_schema import ClipConfigError, check_model_name
    from tc_clip.model.factory import clip_config, hub_quick_gelu, is_local_weights

    if not isinstance(saved, dict):
        raise CheckpointError(path, f"its hyper_parameters are a {type(saved).__name__}, not a mapping")
    name = given.get("model_name", saved.get("model_name", "ViT-B-16"))
    if "model_name" not in given:
        try:
            check_model_name(name)
        except ClipConfigError as err:
            raise CheckpointError(path, f"its hyper-parameter {err.under('model_name')}") from None
    pretrained = saved.get("pretrained")
    if "pretrained" in given or not isinstance(pretrained, str) or is_local_weights(pretrained):
        return {}
    if saved.get("release_checkpoint") and "release_checkpoint" not in given:
        raise CheckpointError(path, f"its hyper-parameter pretrained={pretrained!r} is an open_clip hub tag, which "
                                    "is not fetched when a file is loaded: pass pretrained='/path/to/ViT-B-16.pt'")
    quick_gelu = hub_quick_gelu(name, pretrained) if isinstance(name, str) else None
    return {"pretrained": None, "model_name": clip_config(name, quick_gelu)}


def _load_lightning(
    path: Path, map_location: str | torch.device, hparams: dict[str, Any], saved: Any = None
) -> TCCLIP:
    from tc_clip.lightning import TCCLIPModule

    hparams = {**_offline_hparams(path, saved if saved is not None else {}, hparams), **hparams}
    try:
        module = TCCLIPModule.load_from_checkpoint(str(path), map_location=map_location, weights_only=True, **hparams)
    except pickle.UnpicklingError as err:
        raise CheckpointError(path, f"refused by torch's weights-only loader ({err})") from err
    model = module.model
    names = module._train_class_names
    if names and not model.class_names:
        model.set_class_names(names)
    return model


def load_model(
    source: str | os.PathLike | None = None,
    *,
    clip_weights: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    model_name: str = "ViT-B-16",
    map_location: str | torch.device = "cpu",
    **kwargs: Any,
) -> TCCLIP:
    """Load a TC-CLIP model for inference (eval mode, on ``map_location``).

    ``source`` may be

    * ``None``: a fresh :func:`tiny_model` (random weights; ``kwargs`` go to it);
    * a Lightning checkpoint (``.ckpt`` from ``tc-clip fit``): the model is rebuilt from the saved
      hyper-parameters; ``kwargs`` override them, e.g. ``pretrained="/new/place/ViT-B-16.pt"`` when the
      CLIP weights the run started from have moved. The training vocabulary, if saved, is kept;
    * a file written by :meth:`TCCLIP.save`;
    * a model folder written by :meth:`TCCLIP.save_pretrained` or ``tc-clip export`` (``config.json`` +
      ``model.safetensors``);
    * a checkpoint released by the TC-CLIP authors (``.pth`` with a ``model`` state dict): needs
      ``clip_weights`` (OpenAI's ``ViT-B-16.pt``, for the token embedding); ``model_name`` and ``kwargs``
      (config fields) go to :meth:`TCCLIP.from_release_checkpoint`.

    ``class_names``, if given, replace the vocabulary (it can be changed any time, see :func:`predict`).
    Every file is read as data (:func:`tc_clip.model.safe_load`): a missing, corrupt, truncated or unsafe
    file raises :class:`~tc_clip.model.CheckpointError` naming it and the cause; remote paths are refused.
    """
    if source is None:
        model = tiny_model(class_names, **kwargs)
        return model.to(map_location)
    if "://" in str(source):
        raise CheckpointError(source, "remote paths are not loaded; download the file and pass its local path")
    path = Path(source).expanduser()
    if path.is_dir():  # a model folder (config.json + model.safetensors): nothing to override
        from tc_clip.model.pretrained import load_folder

        if kwargs or clip_weights is not None:
            raise TypeError(f"a model folder takes no other arguments, got {sorted(kwargs) or ['clip_weights']}")
        model = load_folder(path, TCCLIP, map_location)
        if class_names is not None:
            model.set_class_names(class_names)
        return model
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    blob = safe_load(path, mmap=True)  # read as data; a corrupt or unsafe file raises here, naming it
    if isinstance(blob, dict) and "hyper_parameters" in blob and "state_dict" in blob:
        saved = blob["hyper_parameters"]
        del blob
        model = _load_lightning(path, map_location, kwargs, saved)
    elif isinstance(blob, dict) and {"state_dict", "config", "clip_cfg"} <= blob.keys():
        del blob
        if kwargs:
            raise TypeError(f"unexpected arguments for a tc-clip model file: {sorted(kwargs)}")
        model = TCCLIP.load(path, map_location=map_location)
    elif isinstance(blob, dict) and isinstance(blob.get("model"), dict):
        del blob
        if clip_weights is None:
            raise ValueError(
                f"{path} is a checkpoint released by the TC-CLIP authors: pass clip_weights='/path/to/ViT-B-16.pt' "
                "(OpenAI's CLIP weights provide the token embedding the release files lack)"
            )
        model = TCCLIP.from_release_checkpoint(path, str(clip_weights), model_name=model_name, **kwargs)
    else:
        kind = f"a dict with keys {sorted(map(str, blob))[:8]}" if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(path, f"holds {kind}: not a Lightning checkpoint, a TCCLIP.save file or a release "
                                    "checkpoint (a dict with a 'model' state dict)")
    if class_names is not None:
        model.set_class_names(class_names)
    return model.to(map_location).eval()


def _checkout_root() -> Path | None:
    """The source checkout this package runs from (editable install), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def find_demo_checkpoint(search: Sequence[str | os.PathLike] | None = None) -> Path | None:
    """The checkpoint written by ``make demo`` (``tc-clip fit --config configs/demo.yaml``), or None.

    Looks at ``$TC_CLIP_DEMO_CHECKPOINT`` first (a file; ``none`` or empty means "no demo checkpoint"),
    then for ``runs/demo/**/checkpoints/*.ckpt`` under ``search`` (default: the current folder, its
    parents and the source checkout). Prefers the newest ``best-*.ckpt``, else the newest ``last.ckpt``.
    """
    env = os.environ.get(DEMO_CHECKPOINT_ENV)
    if env is not None:
        if env.strip().lower() in ("", "none", "0", "false"):
            return None
        path = Path(env).expanduser()
        if not (path.is_file() or (path / "config.json").is_file()):  # a checkpoint file or a model folder
            raise FileNotFoundError(f"${DEMO_CHECKPOINT_ENV} names a missing file: {path}")
        return path
    if search is None:
        cwd = Path.cwd().resolve()
        roots: list[Path] = [cwd, *cwd.parents]
        checkout = _checkout_root()
        if checkout is not None:
            roots.append(checkout)
    else:
        roots = [Path(p).expanduser().resolve() for p in search]
    seen: set[Path] = set()
    for root in roots:
        demo = root / "runs" / "demo"
        if demo in seen or not demo.is_dir():
            continue
        seen.add(demo)
        files = [p for p in demo.glob("**/checkpoints/*.ckpt") if p.is_file()]
        for pattern in ("best*", "last*"):
            matching = [p for p in files if p.match(pattern)]
            if matching:
                return max(matching, key=lambda p: p.stat().st_mtime)
    return None


@dataclass
class LoadedModel:
    """What :func:`load_demo_model` found: the model, the file it came from (None for the fallback) and
    a one-line description for the notebook."""

    model: TCCLIP
    checkpoint: Path | None
    description: str

    @property
    def is_fallback(self) -> bool:
        return self.checkpoint is None


def load_demo_model(
    class_names: Sequence[str] | None = None,
    checkpoint: str | os.PathLike | None = None,
    search: Sequence[str | os.PathLike] | None = None,
) -> LoadedModel:
    """The demo model if a demo checkpoint is found (see :func:`find_demo_checkpoint`), else a fresh
    random :func:`tiny_model` (the fallback: explicit in ``description`` and ``is_fallback``).

    A ``checkpoint`` given explicitly must load; a discovered one that cannot be read (e.g. a run still
    writing it) gives the fallback with a warning.
    """
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        model = load_model(path, class_names=class_names)
        return LoadedModel(model, path, f"loaded {path}")
    path = find_demo_checkpoint(search)
    if path is not None:
        try:
            model = load_model(path, class_names=class_names)
            return LoadedModel(model, path, f"demo model loaded from {path}")
        except Exception as err:  # noqa: BLE001 - any unreadable file: use the fallback, say why
            warnings.warn(f"could not load the demo checkpoint {path} ({err}); using a random tiny model",
                          stacklevel=2)
    model = tiny_model(class_names)
    return LoadedModel(
        model, None,
        "no demo checkpoint found (run `make demo` to train one): using a freshly built RANDOM tiny model, "
        "so the predictions and maps below are not meaningful",
    )


def frame_averaging_baseline(model: TCCLIP) -> TCCLIP:
    """The frame-averaging baseline (ViFi-CLIP's architecture, SPEC section 7) with ``model``'s CLIP
    weights: no Temporal Contextualization, no prompt vectors, no VP; every parameter CLIP has is copied
    from ``model``. Useful to compare attention maps with and without TC on the same weights. For the
    real ViFi-CLIP, load its own fine-tuned weights instead."""
    if model.clip_cfg is None:
        raise ValueError("the model does not record its CLIP config (clip_cfg); cannot build its baseline")
    config = TCCLIPConfig.vifi_clip(num_frames=model.config.num_frames,
                                    positional_embedding=model.config.positional_embedding,
                                    context_length=model.config.context_length)
    baseline = TCCLIP.from_clip(copy.deepcopy(model.clip_cfg), None, model.class_names or None, config)
    own = baseline.state_dict()
    state = {k: v for k, v in model.state_dict().items() if k in own}
    missing = sorted(set(own) - set(state))
    if missing:
        raise ValueError(f"cannot build the baseline: {', '.join(missing[:10])} have no counterpart")
    baseline.load_state_dict(state)
    device = next(model.parameters()).device
    return baseline.to(device).eval()


# ------------------------------------------------------------------------------------------- videos
def _resized_center_crop(clip: torch.Tensor, short: int, size: int) -> torch.Tensor:
    from torchvision.transforms import v2

    clip = v2.functional.resize(clip, [short], antialias=True)
    return v2.functional.center_crop(clip, [size, size])


def read_clip(
    path: str | os.PathLike,
    num_frames: int = 8,
    size: int = 224,
    view: int = 0,
    views: int = 1,
    display_size: int | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Read a video for inference, as the evaluation pipeline does with one crop.

    Centred TSN sampling of ``num_frames`` frames (temporal view ``view`` of ``views``), resize of the
    short side to ``int(256/224*size)``, centre crop ``size x size``, the release's normalisation.

    Returns ``(video, frames)``: ``video`` float ``[1, T, 3, size, size]`` for the model and ``frames``
    uint8 ``[T, H, W, 3]`` for display, showing exactly the model's crop (so a patch grid drawn over
    them lines up). ``H = W = size``, or ``display_size`` to show the same crop at another resolution
    (decoded from the full-resolution frames, not upscaled from the model's input).
    """
    from tc_clip.data.decoding import read_frames
    from tc_clip.data.transforms import decode_short_side, eval_indices, eval_transform, resize_short_side

    short = resize_short_side(size)
    decode_short = decode_short_side(size)
    if display_size is not None:
        decode_short = max(decode_short, math.ceil(display_size * short / size))
    frames, _ = read_frames(path, lambda n: eval_indices(n, num_frames, view, views), short_side=decode_short)
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # [T, 3, H, W] uint8
    video = eval_transform(clip, size=size, crops=1)  # [1, T, 3, S, S]
    if display_size is None:
        shown = _resized_center_crop(clip, short, size)
    else:  # the same region as the model's crop, taken from the decoded frames
        crop = max(1, round(min(clip.shape[-2:]) * size / short))
        from torchvision.transforms import v2

        shown = v2.functional.center_crop(clip, [crop, crop])
        shown = v2.functional.resize(shown, [display_size, display_size], antialias=True)
    return video, shown.permute(0, 2, 3, 1).contiguous().numpy()


def synthetic_video(
    path: str | os.PathLike,
    class_index: int = 0,
    num_classes: int = 5,
    seed: int = 0,
    num_frames: int = 32,
    width: int = 96,
    height: int = 72,
    fps: float = 15,
) -> tuple[Path, str]:
    """Write one synthetic video (a coloured shape moving, :mod:`tc_clip.data.synthetic`; the demo's
    classes) to ``path`` (``.mp4``, ``.avi``, ``.webm`` or ``.mkv``). Returns the path and its class name."""
    from tc_clip.data import synthetic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = synthetic.render_clip(class_index, num_classes, np.random.default_rng(seed), num_frames, width,
                                   height)
    synthetic.write_video(path, frames, fps=fps)
    return path, synthetic.class_names(num_classes)[class_index]


# -------------------------------------------------------------------------------------- predictions
def _as_batch(model: TCCLIP, video: torch.Tensor) -> torch.Tensor:
    if video.ndim == 4:
        video = video.unsqueeze(0)
    param = next(model.parameters())
    return video.to(device=param.device, dtype=param.dtype)


@torch.no_grad()
def predict(
    model: TCCLIP,
    video: torch.Tensor,
    class_names: Sequence[str] | None = None,
    top_k: int = 5,
) -> list[tuple[str, float]]:
    """Top-``top_k`` ``(class name, probability)`` for one video, best first.

    ``video``: ``[T, 3, S, S]`` or ``[V, T, 3, S, S]`` (V views of the same video, e.g. from several
    :func:`read_clip` calls: the softmax is averaged over them). ``class_names`` (free-form text, any
    number) become the model's vocabulary; ``None`` keeps the current one. Probabilities are the softmax
    over the vocabulary, so they depend on which names are offered.
    """
    if class_names is not None and list(class_names) != model.class_names:
        model.set_class_names(list(class_names))
    names = model.class_names
    if not names:
        raise ValueError("no class names: pass class_names=[...]")
    from tc_clip.lightning.metrics import video_scores

    views = _as_batch(model, video)  # [V, T, 3, S, S]
    was_training = model.training
    model.eval()
    try:
        probs = video_scores(model, views.unsqueeze(0))[0] / len(views)  # the evaluation's recipe, as a mean
    finally:
        model.train(was_training)
    scores, idx = probs.topk(min(top_k, len(names)))
    return [(names[i], float(s)) for s, i in zip(scores.tolist(), idx.tolist(), strict=True)]


@torch.no_grad()
def explain(model: TCCLIP, video: torch.Tensor, class_names: Sequence[str] | None = None):
    """Run ``model`` on one video and return ``(probabilities [C], VisionOutput)``: the per-layer seed
    indices, CLS attention and context-token sources that :mod:`tc_clip.viz` plots."""
    if class_names is not None and list(class_names) != model.class_names:
        model.set_class_names(list(class_names))
    if not model.class_names:
        model.set_class_names(["video"])  # the vision outputs do not depend on the vocabulary
    was_training = model.training
    model.eval()
    try:
        logits, aux = model(_as_batch(model, video), return_aux=True)
    finally:
        model.train(was_training)
    from tc_clip.lightning.metrics import aggregate_views

    return aggregate_views(logits.unsqueeze(0))[0] / len(logits), aux
