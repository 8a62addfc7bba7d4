"""The TCCLIP model: TC vision encoder + VP text encoder on top of open_clip's CLIP (SPEC.md 1-3).

Every parameter CLIP has keeps CLIP's key name in ``TCCLIP.state_dict()`` (``visual.*``,
``transformer.*``, ``token_embedding.*``, ``positional_embedding``, ``ln_final.*``, ``text_projection``,
``logit_scale``); TC-CLIP's own parameters are ``visual.local_global_bias.*``, ``prompt_ctx`` and
``vp_blocks.*``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tc_clip.model import text as T
from tc_clip.model.config import TCCLIPConfig
from tc_clip.model.factory import check_state_dict, create_clip
from tc_clip.model.vision import TCVisionEncoder, VisionOutput

_OPTIONS = {
    "seed_selection": ("cls_attention", "none"),
    "aggregation": ("bipartite", "kmeans", "random", "tube", "none"),
    "positional_embedding": ("space", "joint"),
    "prompt_init": ("a photo of a", "random"),
    "vp_init": ("clip", "random"),
    "vp_tokens": ("context", "cls", "gap"),
}


def _validate(cfg: TCCLIPConfig) -> None:
    for name, allowed in _OPTIONS.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"{name}={getattr(cfg, name)!r} is not one of {allowed}")
    if cfg.num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {cfg.num_frames}")
    if not 0 < cfg.seed_ratio <= 1:
        raise ValueError(f"seed_ratio must be in (0, 1], got {cfg.seed_ratio}")
    if cfg.num_context_tokens < 1 or cfg.merge_step < 1:
        raise ValueError("num_context_tokens and merge_step must be >= 1")
    if cfg.n_ctx < 0:
        raise ValueError(f"n_ctx must be >= 0, got {cfg.n_ctx}")
    if cfg.use_vp and cfg.n_ctx == 0:
        raise ValueError("Video-conditional Prompting needs prompt vectors: set n_ctx > 0 or use_vp=False")
    if cfg.use_vp and cfg.vp_tokens == "context" and not cfg.use_tc:
        raise ValueError("vp_tokens='context' needs use_tc=True (no context tokens without TC)")


class TCCLIP(nn.Module):
    """Temporally Contextualized CLIP.

    Args:
        clip: an open_clip ``CLIP`` whose modules and parameters are adopted (not copied).
        class_names: the vocabulary (raw names; ``ApplyEyeMakeup`` and ``apply_eye_makeup`` are parsed).
        config: every research switch, see :class:`TCCLIPConfig`; defaults reproduce the paper.
        clip_cfg: the open_clip config the model was built from (stored in our checkpoints).
    """

    def __init__(
        self,
        clip: nn.Module,
        class_names: Sequence[str] | None = None,
        config: TCCLIPConfig | None = None,
        clip_cfg: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        cfg = copy.deepcopy(config) if config is not None else TCCLIPConfig()
        _validate(cfg)
        self.config = cfg
        self.clip_cfg = copy.deepcopy(clip_cfg)

        self.visual = TCVisionEncoder(
            clip.visual,
            num_frames=cfg.num_frames,
            use_tc=cfg.use_tc,
            seed_ratio=cfg.seed_ratio,
            num_context_tokens=cfg.num_context_tokens,
            merge_step=cfg.merge_step,
            seed_selection=cfg.seed_selection,
            aggregation=cfg.aggregation,
            positional_embedding=cfg.positional_embedding,
            local_global_bias=cfg.local_global_bias,
            grad_checkpointing=cfg.grad_checkpointing,
        )
        self.transformer = clip.transformer
        self.token_embedding = clip.token_embedding
        self.token_embedding.weight.requires_grad_(False)  # not trained, not in the release files
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.logit_scale = clip.logit_scale
        for block in self.transformer.resblocks:
            if not isinstance(getattr(block, "attn", None), nn.MultiheadAttention):
                raise ValueError("TC-CLIP needs open_clip's standard text blocks (nn.MultiheadAttention)")

        width = self.token_embedding.weight.shape[1]
        num_text_layers = len(self.transformer.resblocks)
        if cfg.context_length > self.positional_embedding.shape[0]:
            raise ValueError(
                f"context_length={cfg.context_length} exceeds CLIP's {self.positional_embedding.shape[0]}"
            )

        self.prompt_ctx = nn.Parameter(self._init_prompt_vectors(cfg.n_ctx, width)) if cfg.n_ctx else None

        self.vp_layers: list[int] = []
        self.vp_blocks = nn.ModuleList()
        if cfg.use_vp:
            embed_dim = self.visual.proj.shape[1]
            if embed_dim != width:
                raise ValueError(f"VP needs joint width == text width, got {embed_dim} and {width}")
            layers = []
            for index in cfg.vp_layers:
                if not -num_text_layers <= index < num_text_layers:
                    raise ValueError(f"vp_layers index {index} out of range for {num_text_layers} text layers")
                layers.append(index % num_text_layers)
            if len(set(layers)) != len(layers):
                raise ValueError(f"vp_layers {cfg.vp_layers} name the same layer twice")
            self.vp_layers = sorted(layers)
            for layer in self.vp_layers:
                self.vp_blocks.append(self._make_vp_block(self.transformer.resblocks[layer], cfg.vp_init))

        self._class_names: list[str] = []
        self._prompt_layout = (0, 0)
        self.register_buffer("prompt_tokens", torch.zeros(0, 0, dtype=torch.long), persistent=False)
        self._cache: tuple[Any, Any] | None = None
        if class_names is not None:
            self.set_class_names(class_names)

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_clip(
        cls,
        model_name: str | dict = "ViT-B-16",
        pretrained: str | None = None,
        class_names: Sequence[str] | None = None,
        config: TCCLIPConfig | None = None,
        quick_gelu: bool | None = None,
        **overrides: Any,
    ) -> TCCLIP:
        """Build from CLIP weights: an open_clip name ("ViT-B-16", "tiny", ...) and ``pretrained`` (a
        local file, an open_clip hub tag, or None for random weights). ``overrides`` set config fields."""
        config = dataclasses.replace(config or TCCLIPConfig(), **overrides)
        clip, clip_cfg = create_clip(model_name, pretrained, quick_gelu)
        return cls(clip, class_names, config, clip_cfg)

    @classmethod
    def from_release_checkpoint(
        cls,
        path: str | os.PathLike,
        clip_weights: str | None,
        class_names: Sequence[str] | None = None,
        model_name: str | dict = "ViT-B-16",
        config: TCCLIPConfig | None = None,
        allow_override: bool = False,
        **overrides: Any,
    ) -> TCCLIP:
        """Load a checkpoint released by the TC-CLIP authors (SPEC.md sections 4 and 4b).

        ``clip_weights`` (OpenAI's ``ViT-B-16.pt``) provides the token embedding, which the release
        files do not hold. The settings come from the file: its tensor shapes (prompt count, joint
        positional table, VP blocks, local-global bias) and its stored config (model kind, VP layers,
        seed ratio, k, r, stop-gradient, context length, frames). ``config`` fields left at their
        defaults are filled from the file; a field changed there, or an ``overrides`` keyword, that
        contradicts the file raises an error naming it, unless ``allow_override=True`` (a warning then).
        """
        from tc_clip.model.checkpoint import (
            convert_release_state_dict,
            load_release_checkpoint,
            release_model_config,
            release_settings,
            text_layer_count,
        )

        release = load_release_checkpoint(path)
        state, shapes = convert_release_state_dict(release["model"])
        num_text_layers = text_layer_count(state)
        stored = release_settings(release.get("config"), num_text_layers, str(path))
        config = release_model_config(config, overrides, shapes, stored, num_text_layers, str(path), allow_override)
        if clip_weights is None:
            raise ValueError(
                "from_release_checkpoint needs clip_weights (OpenAI's ViT-B-16.pt): the release files do "
                "not hold the token embedding"
            )
        model = cls.from_clip(model_name, clip_weights, class_names, config, quick_gelu=True)
        keep = {k for k in model.state_dict() if k not in state}
        check_state_dict(model, {**{k: model.state_dict()[k] for k in keep}, **state}, f"release checkpoint {path}")
        unexpected_clip_only = [k for k in keep if k != "token_embedding.weight"]
        if unexpected_clip_only:
            raise ValueError(f"release checkpoint {path} lacks keys: {', '.join(sorted(unexpected_clip_only))}")
        model.load_state_dict(state, strict=False)
        return model

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> TCCLIP:
        """Load a file written by :meth:`save` (weights, switches, CLIP config and class names)."""
        from tc_clip.model.serialization import CheckpointError, safe_load

        blob = safe_load(path, map_location=map_location)
        missing = [k for k in ("state_dict", "config", "clip_cfg") if not isinstance(blob, dict) or k not in blob]
        if missing:
            raise CheckpointError(path, f"not a tc-clip model file (no {', '.join(map(repr, missing))})")
        import open_clip

        from tc_clip.model.clip_schema import ClipConfigError, check_clip_cfg

        try:  # before open_clip sees it: a config may name Hub models (timm, HF) that open_clip would fetch
            check_clip_cfg(blob["clip_cfg"])
        except ClipConfigError as err:
            raise CheckpointError(path, err.under("clip_cfg")) from None
        try:
            config = TCCLIPConfig(**blob["config"])
            clip = open_clip.CLIP(**blob["clip_cfg"])
        except (TypeError, ValueError) as err:
            raise CheckpointError(path, f"its stored config does not build a model ({err})") from err
        model = cls(clip, blob.get("class_names") or None, config, blob["clip_cfg"])
        check_state_dict(model, blob["state_dict"], str(path))
        model.load_state_dict(blob["state_dict"])
        return model

    def save(self, path: str | os.PathLike) -> None:
        torch.save(
            {
                "state_dict": self.state_dict(),
                "config": self.config.to_dict(),
                "clip_cfg": self.clip_cfg,
                "class_names": list(self._class_names),
            },
            path,
        )

    def _init_prompt_vectors(self, n_ctx: int, width: int) -> torch.Tensor:
        ctx = torch.empty(n_ctx, width).normal_(std=0.02)
        if self.config.prompt_init == "a photo of a":
            ids = T.tokenize([T.PROMPT_INIT_TEXT], context_length=77)[0]
            n_words = int(ids.argmax()) - 1
            with torch.no_grad():
                embedded = self.token_embedding(ids[1 : 1 + n_words])
            ctx[: min(n_ctx, n_words)] = embedded[:n_ctx].float()
        return ctx

    @staticmethod
    def _make_vp_block(text_block: nn.Module, init: str) -> nn.Module:
        """A cross-attention block shaped like a CLIP text layer; ``ln_1_kv`` starts as ``ln_1``."""
        from open_clip.transformer import ResidualAttentionBlock

        width = text_block.ln_1.normalized_shape[0]
        act = type(text_block.mlp.gelu)
        mlp_ratio = text_block.mlp.c_fc.out_features / width
        block = ResidualAttentionBlock(
            width, text_block.attn.num_heads, mlp_ratio, act_layer=act, norm_layer=type(text_block.ln_1),
            is_cross_attention=True,
        )
        if init == "clip":
            block.load_state_dict(text_block.state_dict(), strict=False)
            block.ln_1_kv.load_state_dict(text_block.ln_1.state_dict())
        return block

    # ------------------------------------------------------------------------------------- vocabulary
    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def set_class_names(self, class_names: Sequence[str]) -> None:
        """Switch the vocabulary; cached text states are rebuilt on the next evaluation forward."""
        names = [str(n) for n in class_names]
        if not names:
            raise ValueError("class_names is empty: give at least one class name")
        prompts = T.build_prompts(names, self.config.n_ctx, self.config.prompt_template)
        tokens = T.tokenize(prompts, self.config.context_length)
        T.check_class_names(names, tokens)
        self._class_names = names
        self.prompt_tokens = tokens.to(self.token_embedding.weight.device)
        # read here, once per vocabulary, not in the forward (where torch.compile could not trace them)
        length = int(tokens.argmax(dim=-1).max()) + 1
        self._prompt_layout = (length, T.common_prefix_length(tokens[:, :length]) if len(names) > 1 else 0)
        self._cache = None

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters: ``prompt`` (prompt vectors and VP blocks, 10x lr) and ``base``."""
        prompt_ids = {id(p) for p in self.vp_blocks.parameters()}
        if self.prompt_ctx is not None:
            prompt_ids.add(id(self.prompt_ctx))
        groups: dict[str, list[nn.Parameter]] = {"prompt": [], "base": []}
        for p in self.parameters():
            if p.requires_grad:
                groups["prompt" if id(p) in prompt_ids else "base"].append(p)
        return groups

    # ---------------------------------------------------------------------------------------- forward
    def check_video(self, video: torch.Tensor) -> None:
        size = self.visual.image_size
        if video.ndim != 5 or video.shape[2] != 3 or tuple(video.shape[-2:]) != size:
            raise ValueError(
                f"expected a video tensor [B, T, 3, {size[0]}, {size[1]}], got {tuple(video.shape)}"
            )
        if self.visual.joint_positional and video.shape[1] != self.config.num_frames:
            raise ValueError(
                f"the joint positional table has {self.config.num_frames} frames, got {video.shape[1]}"
            )

    def forward(self, video: torch.Tensor, return_aux: bool = False):
        """``video [B, T, 3, H, W]`` (normalised) -> logits ``[B, num_classes]``.

        With ``return_aux=True`` also returns the :class:`VisionOutput` (seed indices, CLS attention,
        context-token sources per layer) for analysis.
        """
        self.check_video(video)
        if self.prompt_tokens.shape[0] == 0:  # (a tensor size: torch.compile keeps the class count dynamic)
            raise ValueError("no class names set: call set_class_names(names) first")
        vision = self.visual(video, keep_layers=set(self.vp_layers), return_aux=return_aux)
        text = self.encode_text(vision)
        # cosine logits in float32 whatever the autocast (cheap: B x C x E), so that a logit scale of
        # 100 does not magnify bf16's rounding of the cosines; a no-op in float32
        with torch.autocast(video.device.type, enabled=False):
            video_embeds = F.normalize(vision.video_embeds.float(), dim=-1)
            text = F.normalize(text.float(), dim=-1)
            if text.ndim == 2:
                logits = video_embeds @ text.t()
            else:
                logits = torch.einsum("be,bce->bc", video_embeds, text)
            logits = self.logit_scale.float().exp() * logits
        return (logits, vision) if return_aux else logits

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Video embeddings ``[B, E]`` (not normalised)."""
        self.check_video(video)
        return self.visual(video).video_embeds

    # ------------------------------------------------------------------------------------------ text
    def _vp_condition(self, vision: VisionOutput, layer: int) -> torch.Tensor:
        """The vision tokens that condition the VP block of ``layer``: ``[B, k or T, E]``."""
        vis_layer = layer % self.visual.num_layers
        source = {"context": vision.context, "cls": vision.frame_cls, "gap": vision.frame_gap}
        tokens = source[self.config.vp_tokens].get(vis_layer)
        if tokens is None:  # vision tower shallower than the text tower: fall back to its last layer
            tokens = source[self.config.vp_tokens][max(source[self.config.vp_tokens])]
        return tokens.detach() if self.config.stop_gradient else tokens

    def _text_prefix(self, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Class-prompt states entering text layer ``stop`` ``[C, L, W]`` (cut after the longest prompt)
        and the EOT positions ``[C]``. Video independent: computed once per batch, cached in eval."""
        tokens = self.prompt_tokens
        eot = tokens.argmax(dim=-1)
        length, shared = self._prompt_layout  # the longest prompt, the positions all prompts share
        tokens = tokens[:, :length]
        x = self.token_embedding(tokens)
        if self.prompt_ctx is not None:
            ctx = self.prompt_ctx.to(x.dtype).expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], ctx, x[:, 1 + self.config.n_ctx :]], dim=1)
        x = x + self.positional_embedding[:length].to(x.dtype)
        if shared:  # SOT and the prompt vectors: the same states for every class, computed once
            x_shared, x_class = x[:1, :shared], x[:, shared:]
            for block in self.transformer.resblocks[:stop]:
                x_shared, x_class = T.shared_prefix_layer(block, x_shared, x_class)
            return torch.cat([x_shared.expand(x.shape[0], -1, -1), x_class], dim=1), eot
        mask = T.causal_mask(length, x.device, x.dtype)
        for block in self.transformer.resblocks[:stop]:
            x = block(x, attn_mask=mask)
        return x, eot

    def _prefix(self, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_text_prefix`, cached between evaluation forwards (no gradient)."""
        return self._text_prefix(stop) if torch.is_grad_enabled() else self._cached_prefix(stop)

    @torch.compiler.disable  # the cache key reads data pointers and versions, which torch.compile cannot trace
    def _cached_prefix(self, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        params = [self.prompt_ctx] if self.prompt_ctx is not None else []
        params += [self.token_embedding.weight, self.positional_embedding, *self.transformer.parameters()]
        key = (stop, self.prompt_tokens.data_ptr(), self.prompt_tokens.shape,
               tuple((p.data_ptr(), p._version, p.dtype) for p in params), torch.is_autocast_enabled())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._text_prefix(stop))
        return self._cache[1]

    def _project_text(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_final(x) @ self.text_projection

    def encode_text(self, vision: VisionOutput | None = None) -> torch.Tensor:
        """Class embeddings: ``[C, E]`` without VP, ``[B, C, E]`` conditioned on each video with VP."""
        blocks = self.transformer.resblocks
        num_layers = len(blocks)
        if not self.vp_layers:
            x, eot = self._prefix(num_layers)
            return self._project_text(x[torch.arange(x.shape[0], device=x.device), eot])
        if vision is None:
            raise ValueError("Video-conditional Prompting needs the video's vision output")

        first = self.vp_layers[0]
        x_class, eot = self._prefix(first)
        n = self.config.n_ctx
        b = vision.frame_embeds.shape[0]
        x_prompt = x_class[:1, 1 : 1 + n].expand(b, -1, -1)  # identical for every class (causal)
        x_full = None  # [B, C, L, W] once the class positions depend on the video
        vp_blocks = dict(zip(self.vp_layers, self.vp_blocks, strict=True))
        mask = T.causal_mask(x_class.shape[1], x_class.device, x_class.dtype)
        for layer in range(first, num_layers):
            if layer in vp_blocks:
                condition = self._vp_condition(vision, layer)
                x_prompt = vp_blocks[layer](x_prompt, condition, condition)
                if x_full is not None:
                    x_full = torch.cat([x_full[:, :, :1], x_prompt.unsqueeze(1).expand(-1, x_full.shape[1], -1, -1),
                                        x_full[:, :, 1 + n :]], dim=2)
            if layer == num_layers - 1:
                if x_full is None:
                    out = T.eot_attention_shared(blocks[layer], x_class, x_prompt, eot, n)
                else:
                    out = T.eot_attention_full(blocks[layer], x_full, eot)
                return self._project_text(out)
            if x_full is None:
                c = x_class.shape[0]
                x_full = torch.cat([x_class[None, :, :1].expand(b, -1, -1, -1),
                                    x_prompt[:, None].expand(-1, c, -1, -1),
                                    x_class[None, :, 1 + n :].expand(b, -1, -1, -1)], dim=2)
            bsz, c, length, w = x_full.shape
            x_full = blocks[layer](x_full.reshape(bsz * c, length, w), attn_mask=mask).reshape(bsz, c, length, w)
            x_prompt = x_full[:, 0, 1 : 1 + n]
        raise AssertionError("unreachable")
