"""Building open_clip CLIP models and loading their weights from a hub name or a local file."""

from __future__ import annotations

import copy
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from tc_clip.errors import UserError
from tc_clip.model.clip_schema import check_clip_cfg
from tc_clip.model.serialization import CheckpointError, is_torchscript_archive, safe_load, torchscript_state_dict

#: A small random CLIP for tests and the offline demo (64x64 frames, 8x8 patches).
TINY_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 3},
}


class CLIPWeightsError(UserError, RuntimeError):
    """CLIP weights could not be found, fetched or matched to the architecture."""


def load_clip_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """State dict of a CLIP file: an OpenAI TorchScript archive, a plain state dict or an open_clip
    checkpoint (``{"state_dict": ...}``), with any ``module.`` prefix removed. Read as data
    (:mod:`tc_clip.model.serialization`): no pickled or TorchScript code runs."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CLIPWeightsError(f"CLIP weights file not found: {path}")
    try:
        if is_torchscript_archive(path):
            state = torchscript_state_dict(path)
            for key in ("input_resolution", "context_length", "vocab_size", "attn_mask"):
                state.pop(key, None)
        elif path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = safe_load(path)
    except CheckpointError as err:
        raise CLIPWeightsError(f"cannot read CLIP weights from {path}: {err.reason}") from err
    except Exception as err:  # noqa: BLE001 - e.g. a corrupt safetensors file
        raise CLIPWeightsError(f"cannot read CLIP weights from {path}: {err}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CLIPWeightsError(f"{path} holds a {type(state).__name__} that is not a CLIP state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str, allow_missing=()) -> None:
    """Raise one error listing every missing, unexpected and wrongly shaped key."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and k not in allow_missing]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k}: expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}"
        for k in state
        if k in own and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = [f"{source} does not fit the model"]
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if keys:
                shown = ", ".join(keys[:20]) + (f" ... ({len(keys)} in all)" if len(keys) > 20 else "")
                parts.append(f"{title}: {shown}")
        raise ValueError("; ".join(parts))


def clip_config(model_name: str | dict, quick_gelu: bool | None = None) -> dict[str, Any]:
    """The open_clip model config of ``model_name`` ("tiny", any open_clip name, or a config dict).

    A dict must describe a plain ViT CLIP (:func:`~tc_clip.model.clip_schema.check_clip_cfg`): it may come
    from a file, and TC-CLIP builds on nothing else."""
    import open_clip

    if isinstance(model_name, dict):
        cfg = check_clip_cfg(copy.deepcopy(model_name))
    elif model_name == "tiny":
        cfg = copy.deepcopy(TINY_CLIP_CFG)
    else:
        cfg = open_clip.get_model_config(model_name)
        if cfg is None:
            known = ", ".join(m for m in open_clip.list_models() if m.startswith("ViT"))
            raise ValueError(f"unknown CLIP model {model_name!r}; expected 'tiny' or an open_clip name ({known})")
        if model_name.endswith("-quickgelu"):
            cfg["quick_gelu"] = True
    if quick_gelu is not None:
        cfg["quick_gelu"] = quick_gelu
    return cfg


def create_clip(
    model_name: str | dict = "ViT-B-16",
    pretrained: str | None = None,
    quick_gelu: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build an open_clip ``CLIP`` and load its weights. Returns the model and its config.

    ``pretrained`` is a local file (OpenAI ``.pt`` TorchScript archive, state dict or open_clip
    checkpoint), an open_clip hub tag such as ``"openai"`` (needs the network), or None (random weights).
    QuickGELU is switched on for OpenAI weights unless ``quick_gelu`` says otherwise.
    """
    import open_clip

    if pretrained is not None and Path(pretrained).expanduser().is_file():
        if quick_gelu is None and is_torchscript_archive(Path(pretrained).expanduser()):
            quick_gelu = True
        cfg = clip_config(model_name, quick_gelu)
        model = open_clip.CLIP(**cfg)
        state = load_clip_state_dict(pretrained)
        check_state_dict(model, state, f"CLIP weights {pretrained}")
        model.load_state_dict(state)
        return model, cfg
    if pretrained is not None and is_local_weights(pretrained):
        raise CLIPWeightsError(f"CLIP weights file not found: {pretrained}")
    if pretrained is None:
        cfg = clip_config(model_name, quick_gelu)
        return open_clip.CLIP(**cfg), cfg

    if isinstance(model_name, dict) or model_name == "tiny":
        raise ValueError("hub weights need an open_clip model name, not a custom config")
    quick_gelu = hub_quick_gelu(model_name, pretrained, quick_gelu)
    cfg = clip_config(model_name, quick_gelu)
    advice = (
        "On a machine without internet, download the weights elsewhere (e.g. OpenAI's ViT-B-16.pt) and "
        "pass the local file instead: pretrained='/path/to/ViT-B-16.pt'."
    )
    source = hub_weights_source(model_name, pretrained)
    if source is not None and source.cached is None and not source.reachable():
        raise CLIPWeightsError(
            f"could not fetch CLIP weights {model_name!r} / {pretrained!r}: {source.host} cannot be reached "
            f"(offline). {advice}"
        )
    if source is not None and source.cached is not None:  # read the local copy as data, no network
        return create_clip(model_name, source.cached, quick_gelu)
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained, force_quick_gelu=quick_gelu)
    except Exception as err:  # noqa: BLE001 - network errors come in many types
        raise CLIPWeightsError(
            f"could not fetch CLIP weights {model_name!r} / {pretrained!r} ({type(err).__name__}: {err}). {advice}"
        ) from err
    return model, cfg


def is_local_weights(pretrained: str | os.PathLike) -> bool:
    """Whether :func:`create_clip` reads ``pretrained`` as a local file (an existing file, or a path that
    names none: an error) rather than an open_clip hub tag such as ``"openai"`` (fetched)."""
    text = str(pretrained)
    return Path(text).expanduser().is_file() or os.sep in text or text.endswith((".pt", ".pth", ".bin"))


def hub_quick_gelu(model_name: str, pretrained: str, quick_gelu: bool | None = None) -> bool:
    """QuickGELU of a CLIP built from a hub tag: OpenAI's weights and ``-quickgelu`` names use it."""
    if quick_gelu is not None:
        return quick_gelu
    return pretrained == "openai" or model_name.endswith("-quickgelu")


class HubSource:
    """Where open_clip would fetch a hub tag from, and the local copy already cached, if any."""

    def __init__(self, host: str, port: int, offline: bool, cached: str | None) -> None:
        self.host, self.port, self.offline, self.cached = host, port, offline, cached

    def reachable(self, timeout: float = 3.0) -> bool:
        """One TCP connection with a short timeout (no retries): False offline."""
        if self.offline:
            return False
        try:
            socket.create_connection((self.host, self.port), timeout=timeout).close()
        except OSError:
            return False
        return True


def hub_weights_source(model_name: str, pretrained: str) -> HubSource | None:
    """The download source of an open_clip hub tag (None for a tag open_clip does not know)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        return None
    if cfg.get("hf_hub"):
        import huggingface_hub
        from huggingface_hub import constants

        repo, filename = os.path.split(cfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        names = [filename, os.path.splitext(filename)[0] + ".safetensors"]
        if filename == "open_clip_pytorch_model.bin":
            names.insert(0, "open_clip_model.safetensors")
        cached = None
        for name in names:
            hit = huggingface_hub.try_to_load_from_cache(repo, name, cache_dir=constants.HF_HUB_CACHE)
            if isinstance(hit, str):
                cached = hit
                break
        endpoint = urlparse(constants.ENDPOINT)
        return HubSource(endpoint.hostname or "huggingface.co", endpoint.port or 443,
                         bool(constants.HF_HUB_OFFLINE), cached)
    url = urlparse(cfg.get("url", ""))
    local = Path("~/.cache/clip").expanduser() / os.path.basename(url.path)
    return HubSource(url.hostname or "", url.port or 443, False, str(local) if local.is_file() else None)
