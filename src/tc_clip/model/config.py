"""Typed switches of TC-CLIP. Defaults reproduce SPEC.md (the released ViT-B/16 models)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

SeedSelection = Literal["cls_attention", "none"]
Aggregation = Literal["bipartite", "kmeans", "random", "tube", "none"]
PositionalEmbedding = Literal["space", "joint"]
PromptInit = Literal["a photo of a", "random"]
VPInit = Literal["clip", "random"]
VPTokens = Literal["context", "cls", "gap"]


@dataclass
class TCCLIPConfig:
    """Every research switch of the paper, as one typed record (usable from the CLI's YAML).

    ``use_tc=False`` and ``use_vp=False`` with ``n_ctx=0`` is the ViFi-CLIP baseline.
    """

    num_frames: int = 16
    use_tc: bool = True
    use_vp: bool = True
    seed_ratio: float = 0.3
    num_context_tokens: int = 96
    merge_step: int = 100
    seed_selection: SeedSelection = "cls_attention"
    aggregation: Aggregation = "bipartite"
    positional_embedding: PositionalEmbedding = "space"
    local_global_bias: bool = True
    n_ctx: int = 4
    prompt_init: PromptInit = "a photo of a"
    prompt_template: str | None = None
    vp_layers: list[int] = field(default_factory=lambda: [-1])
    vp_init: VPInit = "clip"
    vp_tokens: VPTokens = "context"
    stop_gradient: bool = True
    context_length: int = 30
    grad_checkpointing: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def vifi_clip(cls, **overrides) -> TCCLIPConfig:
        """The ViFi-CLIP baseline of SPEC section 7: frame averaging, "a photo of a {name}." prompts."""
        base = dict(use_tc=False, use_vp=False, n_ctx=0, prompt_template="a photo of a {}.")
        base.update(overrides)
        return cls(**base)
