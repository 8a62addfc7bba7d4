"""Vision encoder with Temporal Contextualization (SPEC.md section 1).

``TCVisionEncoder`` adopts the parameters of an open_clip ``VisionTransformer`` under the same names
(``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``, ``transformer``, ``ln_post``,
``proj``), so its state dict keeps CLIP's keys; it adds only the per-layer local-global bias.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tc_clip.model.merge import aggregate


@dataclass
class VisionOutput:
    """What the vision encoder returns: per-frame CLS embeddings and per-layer context tokens."""

    frame_embeds: torch.Tensor  # [B, T, E] projected CLS tokens
    context: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [B, k, E] (projected)
    frame_cls: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [B, T, E] (projected)
    frame_gap: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [B, T, E] (projected)
    seed_indices: list[torch.Tensor] = field(default_factory=list)  # per layer [B, T, m] patch indices
    cls_attention: list[torch.Tensor] = field(default_factory=list)  # per layer [B, T, P] head-averaged
    context_sources: list[torch.Tensor] = field(default_factory=list)  # per layer [B, k, T, P] weights

    @property
    def video_embeds(self) -> torch.Tensor:
        return self.frame_embeds.mean(dim=1)


def _check_block(block: nn.Module) -> None:
    attn = getattr(block, "attn", None)
    if not isinstance(attn, nn.MultiheadAttention) or not hasattr(block, "mlp"):
        raise ValueError(
            "TC-CLIP needs open_clip's standard ResidualAttentionBlock (nn.MultiheadAttention + mlp); got "
            f"{type(block).__name__}. Models with custom attention blocks are not supported."
        )


class TCVisionEncoder(nn.Module):
    """Frame tokens plus video-level context tokens, layer by layer.

    Args:
        visual: open_clip ``VisionTransformer`` whose modules and parameters are adopted.
        num_frames: T, used for the joint positional table.
        use_tc: False gives CLIP's image encoder on each frame (the ViFi-CLIP baseline).
        seed_ratio: fraction of patches kept as seeds per frame (``int(P * seed_ratio)``).
        num_context_tokens: k.
        merge_step: r, tokens merged per bipartite iteration.
        seed_selection: ``"cls_attention"`` or ``"none"`` (all patches are seeds).
        aggregation: ``"bipartite"``, ``"kmeans"``, ``"random"``, ``"tube"`` or ``"none"``.
        positional_embedding: ``"space"`` (CLIP's table) or ``"joint"`` (a ``[T, N, D]`` table).
        local_global_bias: learnable per-head bias on frame vs context keys, layers >= 1.
        grad_checkpointing: recompute each layer in backward to save memory.
    """

    def __init__(
        self,
        visual: nn.Module,
        num_frames: int = 16,
        use_tc: bool = True,
        seed_ratio: float = 0.3,
        num_context_tokens: int = 96,
        merge_step: int = 100,
        seed_selection: str = "cls_attention",
        aggregation: str = "bipartite",
        positional_embedding: str = "space",
        local_global_bias: bool = True,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        for name in ("conv1", "ln_pre", "transformer", "ln_post"):
            setattr(self, name, getattr(visual, name))
        self.class_embedding = visual.class_embedding
        self.proj = visual.proj
        if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
            raise ValueError("TC-CLIP needs a CLS-token ViT (pool_type='tok', no attentional pooling)")
        for block in self.transformer.resblocks:
            _check_block(block)

        self.num_frames = num_frames
        self.use_tc = use_tc
        self.seed_ratio = seed_ratio
        self.num_context_tokens = num_context_tokens
        self.merge_step = merge_step
        self.seed_selection = seed_selection
        self.aggregation = aggregation
        self.grad_checkpointing = grad_checkpointing
        self.image_size = tuple(visual.image_size)
        self.grid_size = tuple(visual.grid_size)
        self.num_layers = len(self.transformer.resblocks)
        self.width = self.class_embedding.shape[0]
        self.heads = self.transformer.resblocks[0].attn.num_heads

        pos = visual.positional_embedding
        if positional_embedding == "joint":
            pos = nn.Parameter(pos.detach().unsqueeze(0).repeat(num_frames, 1, 1).clone())
        elif positional_embedding != "space":
            raise ValueError(f"positional_embedding must be 'space' or 'joint', got {positional_embedding!r}")
        self.positional_embedding = pos
        self.joint_positional = positional_embedding == "joint"

        self.local_global_bias = nn.ParameterDict()
        if use_tc and local_global_bias:
            for layer in range(1, self.num_layers):
                table = torch.empty(self.heads, 1, 2)
                nn.init.trunc_normal_(table, std=0.02)
                self.local_global_bias[str(layer)] = nn.Parameter(table)

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def num_seeds(self) -> int:
        if self.seed_selection == "none":
            return self.num_patches
        return int(self.num_patches * self.seed_ratio)

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.ln_post(tokens) @ self.proj

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> frame tokens ``[B, T, N, D]`` after ``ln_pre``."""
        b, t = video.shape[:2]
        x = self.conv1(video.flatten(0, 1)).flatten(2).transpose(1, 2)  # [B*T, P, D]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1).unflatten(0, (b, t))
        return self.ln_pre(x + self.positional_embedding.to(x.dtype))

    def forward(
        self, video: torch.Tensor, keep_layers: set[int] = frozenset(), return_aux: bool = False
    ) -> VisionOutput:
        """Encode ``video [B, T, 3, H, W]``; ``keep_layers`` lists the layers whose context tokens,
        CLS and patch-average tokens are returned (projected), e.g. for Video-conditional Prompting."""
        x = self.embed(video)
        out = VisionOutput(frame_embeds=x.new_empty(0))
        context = None
        for layer, block in enumerate(self.transformer.resblocks):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x, context, aux = checkpoint(
                    self._layer, block, layer, x, context, return_aux, use_reentrant=False
                )
            else:
                x, context, aux = self._layer(block, layer, x, context, return_aux)
            if return_aux and aux is not None:
                seeds, cls_attention, sources = aux
                out.cls_attention.append(cls_attention)
                if seeds is not None:
                    out.seed_indices.append(seeds)
                if sources is not None:
                    out.context_sources.append(sources)
            if layer in keep_layers:
                if context is not None:
                    out.context[layer] = self.project(context)
                out.frame_cls[layer] = self.project(x[:, :, 0])
                out.frame_gap[layer] = self.project(x[:, :, 1:].mean(dim=2))
        out.frame_embeds = self.project(x[:, :, 0])
        return out

    def _layer(self, block: nn.Module, layer: int, x: torch.Tensor, context: torch.Tensor | None, return_aux: bool):
        n = x.shape[2]
        attn_out, cls_probs = self._attention(block, layer, x, context, need_cls=self.use_tc or return_aux)
        x = x + block.ls_1(attn_out)
        aux = None
        if self.use_tc:
            context, aux = self._contextualize(x, cls_probs, return_aux)
            # the FFN is per token: frame and context tokens go through it separately, no concatenation
            context = context + block.ls_2(block.mlp(block.ln_2(context)))
        elif return_aux:
            aux = (None, cls_probs[..., 1:n].mean(2), None)
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
        return x, context, aux

    def _attention(self, block: nn.Module, layer: int, x: torch.Tensor, context: torch.Tensor | None, need_cls: bool):
        """Per-frame attention; keys/values also include the video's context tokens (layers >= 1).

        Returns the attention output ``[B, T, N, D]`` and the CLS query's probabilities
        ``[B, T, h, N + k]`` (computed on their own, the full attention matrix is never materialised).
        """
        attn: nn.MultiheadAttention = block.attn
        b, t, n, d = x.shape
        h = attn.num_heads
        w_q, w_kv = attn.in_proj_weight[:d], attn.in_proj_weight[d:]
        b_q, b_kv = attn.in_proj_bias[:d], attn.in_proj_bias[d:]

        xn = block.ln_1(x)
        q = F.linear(xn, w_q, b_q)  # [B, T, N, D]
        k, v = F.linear(xn, w_kv, b_kv).chunk(2, dim=-1)
        bias = None
        if context is not None:
            ck, cv = F.linear(block.ln_1(context), w_kv, b_kv).chunk(2, dim=-1)  # [B, k, D]
            kc = ck.shape[1]
            k = torch.cat([k, ck.unsqueeze(1).expand(b, t, kc, d)], dim=2)
            v = torch.cat([v, cv.unsqueeze(1).expand(b, t, kc, d)], dim=2)
            table = self.local_global_bias[str(layer)] if str(layer) in self.local_global_bias else None
            if table is not None:
                local, global_ = table[..., 0:1], table[..., 1:2]  # [h, 1, 1]
                bias = torch.cat([local.expand(h, 1, n), global_.expand(h, 1, kc)], dim=-1).to(q.dtype)

        def heads(z: torch.Tensor) -> torch.Tensor:  # [B, T, L, D] -> [B*T, h, L, hd]
            return z.reshape(b * t, z.shape[2], h, d // h).transpose(1, 2)

        qh, kh, vh = heads(q), heads(k), heads(v)
        y = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=bias)
        y = F.linear(y.transpose(1, 2).reshape(b, t, n, d), attn.out_proj.weight, attn.out_proj.bias)

        cls_probs = None
        if need_cls:  # in float32 under any autocast: the seed ranking should not hinge on bf16 ties
            with torch.autocast(x.device.type, enabled=False):
                logits = (qh[:, :, :1].float() * (d // h) ** -0.5) @ kh.float().transpose(-1, -2)  # [B*T, h, 1, L]
                if bias is not None:
                    logits = logits + bias.float()
                cls_probs = logits.softmax(dim=-1).reshape(b, t, h, -1)
        return y, cls_probs

    def _contextualize(self, x: torch.Tensor, cls_probs: torch.Tensor, return_aux: bool):
        """Seed-token selection and aggregation into this layer's context tokens ``[B, k, D]``."""
        b, t, n, d = x.shape
        p = n - 1
        score = cls_probs[..., 1:n].mean(dim=2)  # [B, T, P] over heads, own-frame patches only
        if self.seed_selection == "none":
            idx = torch.arange(p, device=x.device).expand(b, t, p)
        else:
            idx = score.topk(self.num_seeds, dim=-1, sorted=True).indices  # [B, T, m]
        m = idx.shape[-1]
        seeds = x[:, :, 1:].gather(2, idx.unsqueeze(-1).expand(-1, -1, -1, d)).reshape(b, t * m, d)
        context, sources = aggregate(
            seeds, self.aggregation, self.num_context_tokens, self.merge_step, t, track_sources=return_aux
        )
        aux = None
        if return_aux:
            patch_sources = None
            if sources is not None:  # [B, k, T*m] -> [B, k, T, P] on the original patch grid
                patch_sources = sources.new_zeros(b, sources.shape[1], t, p)
                flat_idx = idx.reshape(b, 1, t, m).expand(-1, sources.shape[1], -1, -1)
                patch_sources.scatter_add_(3, flat_idx, sources.reshape(b, -1, t, m))
            aux = (idx.detach(), score.detach(), None if patch_sources is None else patch_sources.detach())
        return context, aux
