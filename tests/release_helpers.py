"""Writing release-like files in tests: an OmegaConf ``config`` without OmegaConf, and planted payloads.

OmegaConf is not a dependency. Its objects are rebuilt here by stand-in classes registered under the
real names (``omegaconf.dictconfig.DictConfig`` ...) for the time of one ``torch.save``, with the state
layout OmegaConf 2.x pickles: ``{"_metadata", "_parent", "_content"}`` for containers and
``{"_metadata", "_parent", "_val"}`` for value nodes (``tests/fixtures/omegaconf_2_4_release_config.pkl``
holds real OmegaConf 2.4 bytes of a release-like config to check the same reader against).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import types
import typing
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

REAL_OMEGACONF_PICKLE = Path(__file__).parent / "fixtures" / "omegaconf_2_4_release_config.pkl"
_MODULES = ("omegaconf", "omegaconf.base", "omegaconf.dictconfig", "omegaconf.listconfig", "omegaconf.nodes")


@dataclasses.dataclass
class Metadata:
    ref_type: Any
    object_type: Any
    optional: bool
    key: Any
    flags: dict = dataclasses.field(default_factory=dict)
    flags_root: bool = False


@dataclasses.dataclass
class ContainerMetadata(Metadata):
    resolver_cache: dict = dataclasses.field(default_factory=lambda: defaultdict(dict))
    key_type: Any = typing.Any
    element_type: Any = typing.Any


class _Container:
    def __getstate__(self) -> dict:
        return {"_metadata": self._metadata, "_parent": self._parent, "_content": self._content}


class DictConfig(_Container):
    pass


class ListConfig(_Container):
    pass


class AnyNode:
    pass


_HOMES = {Metadata: "omegaconf.base", ContainerMetadata: "omegaconf.base", DictConfig: "omegaconf.dictconfig",
          ListConfig: "omegaconf.listconfig", AnyNode: "omegaconf.nodes"}


@contextlib.contextmanager
def omegaconf_standins():
    """Register the stand-ins under OmegaConf's module names while a file is being written."""
    if any(name in sys.modules for name in _MODULES):
        raise RuntimeError("a real omegaconf is imported; these stand-ins would shadow it")
    saved = {cls: (cls.__module__, cls.__qualname__) for cls in _HOMES}
    try:
        for name in _MODULES:
            sys.modules[name] = types.ModuleType(name)
        for cls, home in _HOMES.items():
            cls.__module__ = home
            setattr(sys.modules[home], cls.__name__, cls)
        yield
    finally:
        for name in _MODULES:
            sys.modules.pop(name, None)
        for cls, (module, qualname) in saved.items():
            cls.__module__, cls.__qualname__ = module, qualname


def omegaconf_object(value: Any, parent: Any = None, key: Any = None) -> Any:
    """The object graph OmegaConf builds for ``value`` (nested dicts and lists of scalars)."""
    if isinstance(value, (dict, list)):
        node = DictConfig() if isinstance(value, dict) else ListConfig()
        node._metadata = ContainerMetadata(typing.Any, dict if isinstance(value, dict) else list, True, key)
        node._parent = parent
        if isinstance(value, dict):
            node._content = {k: omegaconf_object(v, node, k) for k, v in value.items()}
        else:
            node._content = [omegaconf_object(v, node, i) for i, v in enumerate(value)]
        return node
    node = AnyNode()
    node._metadata, node._parent, node._val = Metadata(typing.Any, None, True, key), parent, value
    return node


def save_release(path: str | os.PathLike, model: dict[str, torch.Tensor], config: dict | None = None,
                 **extra: Any) -> Path:
    """Write a release-like ``.pth``: ``{"model": ..., "config": <OmegaConf DictConfig>, **extra}``."""
    blob = {"model": model, "epoch": 9, "max_accuracy": 54.2, **extra}
    with omegaconf_standins():
        if config is not None:
            blob["config"] = omegaconf_object(config)
        torch.save(blob, path)
    return Path(path)


class Payload:
    """A planted pickle payload: unpickling it runs ``touch <marker>``."""

    def __init__(self, marker: str | os.PathLike) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


#: The vocabulary of the release-like files the tests write.
NAMES = ["archery", "bowling", "ApplyEyeMakeup"]


def to_release_layout(model: Any, split_qkv: bool = True) -> dict[str, torch.Tensor]:
    """Write a TCCLIP state dict the way the authors' release stores it (SPEC section 4). Baseline files
    (``split_qkv=False``) keep the vision attention as ``attn.in_proj_weight``."""
    out = {}
    for key, value in model.state_dict().items():
        if key == "token_embedding.weight":
            continue
        if key == "prompt_ctx":
            out["prompt_learner.ctx"] = value
        elif key.startswith("visual.local_global_bias."):
            layer = key.rsplit(".", 1)[1]
            out[f"image_encoder.transformer.resblocks.{layer}.attn.local_global_bias_table"] = value
        elif split_qkv and key.startswith("visual.") and key.endswith(("attn.in_proj_weight", "attn.in_proj_bias")):
            base = key.removeprefix("visual.").rsplit(".", 1)[0]
            kind = "weight" if key.endswith("weight") else "bias"
            for name, part in zip("qkv", value.chunk(3), strict=True):
                out[f"image_encoder.{base}.{name}_proj.{kind}"] = part.clone()
        elif key.startswith("visual."):
            out["image_encoder." + key.removeprefix("visual.")] = value
        elif key.startswith("vp_blocks."):
            out["text_encoder.prompt_generation_layer." + key.removeprefix("vp_blocks.")] = value
        elif key == "logit_scale":
            out[key] = value
        else:
            out["text_encoder." + key] = value
    out["prompt_learner.token_prefix"] = torch.zeros(len(NAMES), 1, 512)
    out["prompt_learner.token_suffix"] = torch.zeros(len(NAMES), 72, 512)
    return {"module." + k: v for k, v in out.items()}
