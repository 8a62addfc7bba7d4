"""A straightforward TC-CLIP written from SPEC.md alone, as the reference the fast model must equal.

Attention is materialised, merging is done token by token in Python, and the text encoder runs on
every class, for every video, at the full context length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tc_clip.model import TCCLIP


def ref_bipartite_merge(tokens: torch.Tensor, k: int, r: int) -> torch.Tensor:
    """One video's seed tokens ``[n, D]`` -> ``[k, D]`` with Python lists (SPEC section 1, step 6)."""
    items = [(tokens[i], 1.0) for i in range(tokens.shape[0])]  # (value, size)
    n = len(items)
    schedule = []
    cur = n
    for _ in range((n - k) // r if n > k else 0):
        schedule.append(min(r, cur // 2))
        cur -= schedule[-1]
    while cur > k:
        schedule.append(min(cur - k, cur // 2))
        cur -= schedule[-1]
    for merged in schedule:
        a, b = items[0::2], items[1::2]
        best = []
        for i, (xa, _) in enumerate(a):
            sims = [float(F.cosine_similarity(xa.detach(), xb.detach(), dim=0)) for xb, _ in b]
            j = max(range(len(sims)), key=lambda t: (sims[t], -t))
            best.append((sims[j], i, j))
        order = sorted(best, key=lambda s: (-s[0], s[1]))
        sums = [xb * sb for xb, sb in b]
        sizes = [sb for _, sb in b]
        for _, i, j in order[:merged]:
            xa, sa = a[i]
            sums[j] = sums[j] + xa * sa
            sizes[j] = sizes[j] + sa
        items = [a[i] for _, i, _ in order[merged:]] + [(s / z, z) for s, z in zip(sums, sizes, strict=True)]
    return torch.stack([x for x, _ in items])


def ref_attention(block, layer, model: TCCLIP, x: torch.Tensor, ctx: torch.Tensor | None):
    """x [T, N, D] one video's frames, ctx [k, D] or None -> (out [T, N, D], cls probs [T, h, N+k])."""
    attn = block.attn
    t, n, d = x.shape
    h = attn.num_heads
    wq, wk, wv = attn.in_proj_weight.chunk(3)
    bq, bk, bv = attn.in_proj_bias.chunk(3)
    outs, cls = [], []
    for f in range(t):
        kv_in = block.ln_1(x[f]) if ctx is None else torch.cat([block.ln_1(x[f]), block.ln_1(ctx)])
        q = F.linear(block.ln_1(x[f]), wq, bq).reshape(n, h, -1).transpose(0, 1)
        k = F.linear(kv_in, wk, bk).reshape(-1, h, d // h).transpose(0, 1)
        v = F.linear(kv_in, wv, bv).reshape(-1, h, d // h).transpose(0, 1)
        logits = q @ k.transpose(-1, -2) * (d // h) ** -0.5  # [h, N, L]
        if ctx is not None and str(layer) in model.visual.local_global_bias:
            table = model.visual.local_global_bias[str(layer)]  # [h, 1, 2]
            bias = torch.cat([table[:, :, 0:1].expand(h, 1, n), table[:, :, 1:2].expand(h, 1, ctx.shape[0])], -1)
            logits = logits + bias
        probs = logits.softmax(-1)
        outs.append(attn.out_proj((probs @ v).transpose(0, 1).reshape(n, d)))
        cls.append(probs[:, 0])
    return torch.stack(outs), torch.stack(cls)


def ref_vision(model: TCCLIP, video: torch.Tensor):
    """Per video: projected frame CLS [T, E] and the projected context tokens of every layer."""
    vis = model.visual
    cfg = model.config
    frames_out, contexts = [], []
    for vid in video:
        t = vid.shape[0]
        x = vis.conv1(vid).flatten(2).transpose(1, 2)
        x = torch.cat([vis.class_embedding.expand(t, 1, -1), x], dim=1) + vis.positional_embedding
        x = vis.ln_pre(x)
        n = x.shape[1]
        ctx = None
        per_layer = {}
        for layer, block in enumerate(vis.transformer.resblocks):
            out, cls = ref_attention(block, layer, model, x, ctx)
            x = x + out
            if cfg.use_tc:
                score = cls[:, :, 1:n].mean(1)  # [T, P]
                m = int((n - 1) * cfg.seed_ratio)
                idx = score.topk(m, dim=-1).indices
                seeds = torch.cat([x[f, 1:][idx[f]] for f in range(t)])
                ctx = ref_bipartite_merge(seeds, cfg.num_context_tokens, cfg.merge_step)
                kc = ctx.shape[0]
                tokens = torch.cat([x.reshape(t * n, -1), ctx])
                tokens = tokens + block.mlp(block.ln_2(tokens))
                x, ctx = tokens[: t * n].reshape(t, n, -1), tokens[t * n :]
                per_layer[layer] = vis.ln_post(ctx) @ vis.proj
                assert kc == ctx.shape[0]
            else:
                x = x + block.mlp(block.ln_2(x))
        frames_out.append(vis.ln_post(x[:, 0]) @ vis.proj)
        contexts.append(per_layer)
    return torch.stack(frames_out), contexts


def ref_text(model: TCCLIP, condition: dict[int, torch.Tensor] | None) -> torch.Tensor:
    """All classes at the full context length for one video -> ``[C, E]``."""
    cfg = model.config
    tokens = model.prompt_tokens
    x = model.token_embedding(tokens)
    n = cfg.n_ctx
    if n:
        x = torch.cat([x[:, :1], model.prompt_ctx.expand(x.shape[0], -1, -1), x[:, 1 + n :]], dim=1)
    length = tokens.shape[1]
    x = x + model.positional_embedding[:length]
    mask = torch.full((length, length), float("-inf")).triu_(1)
    vp = dict(zip(model.vp_layers, model.vp_blocks, strict=True))
    for layer, block in enumerate(model.transformer.resblocks):
        if layer in vp:
            c = condition[layer % model.visual.num_layers].detach()
            prompt = vp[layer](x[:, 1 : 1 + n], c.expand(x.shape[0], -1, -1), c.expand(x.shape[0], -1, -1))
            x = torch.cat([x[:, :1], prompt, x[:, 1 + n :]], dim=1)
        x = block(x, attn_mask=mask)
    x = model.ln_final(x)
    return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ model.text_projection


def ref_logits(model: TCCLIP, video: torch.Tensor) -> torch.Tensor:
    frames, contexts = ref_vision(model, video)
    video_emb = F.normalize(frames.mean(1), dim=-1)
    rows = []
    for b in range(video.shape[0]):
        text = F.normalize(ref_text(model, contexts[b] if model.vp_layers else None), dim=-1)
        rows.append(video_emb[b] @ text.t())
    return model.logit_scale.exp() * torch.stack(rows)
