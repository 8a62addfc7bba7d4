"""Text side of TC-CLIP: class-name prompts and the exact shortcuts of SPEC.md section 3.

The text transformer is causal and only the EOT output is read, so the work that does not depend on the
video runs once per class list, Video-conditional Prompting (VP) runs once per video on the ``n_ctx``
prompt tokens, and the last layer only computes the EOT query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

PROMPT_INIT_TEXT = "a photo of a"
PLACEHOLDER = "X"


def parse_class_name(name: str) -> str:
    """``ApplyEyeMakeup`` -> ``Apply Eye Makeup``; ``playing_guitar`` -> ``playing guitar``."""
    return re.sub(r"([A-Z])", r" \1", name).strip().replace("_", " ")


def build_prompts(class_names: Sequence[str], n_ctx: int, template: str | None = None) -> list[str]:
    """Prompt text per class: ``"X X X X {name}."`` (one ``X`` per prompt vector) unless a template is given."""
    if template is None:
        template = " ".join([PLACEHOLDER] * n_ctx + ["{}."]) if n_ctx > 0 else "{}"
    return [template.format(parse_class_name(n)) for n in class_names]


@lru_cache(maxsize=1)
def _tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def tokenize(texts: Sequence[str], context_length: int) -> torch.Tensor:
    """CLIP BPE tokens ``[len(texts), context_length]``, zero padded. A text that does not fit is an
    error naming every such text with its token count: nothing is truncated."""
    tok = _tokenizer()
    ids = [[tok.sot_token_id, *tok.encode(text), tok.eot_token_id] for text in texts]
    too_long = [f"{text!r} ({len(row)} tokens)" for text, row in zip(texts, ids, strict=True)
                if len(row) > context_length]
    if too_long:
        raise ValueError(
            f"{len(too_long)} prompt(s) do not fit the text context length {context_length} (start and end tokens "
            f"included): {'; '.join(too_long)}. Raise context_length (at most CLIP's 77) or shorten the names"
        )
    out = torch.zeros(len(ids), context_length, dtype=torch.long)
    for row, tokens in enumerate(ids):
        out[row, : len(tokens)] = torch.tensor(tokens)
    return out


def check_class_names(names: Sequence[str], tokens: torch.Tensor) -> None:
    """Blank names and names whose prompt tokens coincide (they would get identical logits, e.g.
    ``ApplyEyeMakeup`` and ``apply eye makeup``) are errors that name all of them. A name is blank when
    its parsed text has no token (``""``, ``"_"``, ``"___"``, a byte-order mark): its prompt says nothing."""
    problems = []
    tok = _tokenizer()
    blank = [i for i, name in enumerate(names) if not tok.encode(parse_class_name(str(name)))]
    if blank:
        problems.append(f"blank names at positions {blank}")
    seen: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(tokens.tolist()):
        if i not in blank:
            seen.setdefault(tuple(row), []).append(i)
    dupes = [" = ".join(f"{names[i]!r} (#{i})" for i in idx) for idx in seen.values() if len(idx) > 1]
    if dupes:
        problems.append(f"names that give the same prompt: {'; '.join(dupes)}")
    if problems:
        message = "invalid class names: " + "; ".join(problems)
        if blank:
            shown = ", ".join(f"#{i} {names[i]!r}" for i in blank[:10])
            message += f" (blank: nothing is left once parsed, '_' reads as a space: {shown})"
        raise ValueError(message)


def causal_mask(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.full((length, length), float("-inf"), device=device, dtype=dtype).triu_(1)


def eot_attention_shared(
    block: nn.Module,
    x_class: torch.Tensor,
    x_prompt: torch.Tensor,
    eot: torch.Tensor,
    n_ctx: int,
) -> torch.Tensor:
    """One text layer, evaluated only at the EOT position, for every (video, class) pair.

    ``x_class [C, L, W]`` are the class prompts' input states (video independent); ``x_prompt [B, n, W]``
    replaces positions ``1..n`` of every class prompt for video ``b``. Keys and values of the
    non-prompt positions are computed once and shared by all videos. Returns ``[B, C, W]``.
    """
    attn: nn.MultiheadAttention = block.attn
    c, length, w = x_class.shape
    b = x_prompt.shape[0]
    h = attn.num_heads
    hd = w // h
    w_q, w_kv = attn.in_proj_weight[:w], attn.in_proj_weight[w:]
    b_q, b_kv = attn.in_proj_bias[:w], attn.in_proj_bias[w:]

    rows = torch.arange(c, device=x_class.device)
    x_eot = x_class[rows, eot]  # [C, W]; EOT is after the prompt, so it does not depend on the video
    q = F.linear(block.ln_1(x_eot), w_q, b_q).reshape(c, h, hd) * hd**-0.5
    k_c, v_c = F.linear(block.ln_1(x_class), w_kv, b_kv).reshape(c, length, 2, h, hd).unbind(2)
    k_p, v_p = F.linear(block.ln_1(x_prompt), w_kv, b_kv).reshape(b, n_ctx, 2, h, hd).unbind(2)

    logits_c = torch.einsum("chd,clhd->chl", q, k_c)
    pos = torch.arange(length, device=x_class.device)
    hidden = (pos[None, :] > eot[:, None]) | ((pos >= 1) & (pos <= n_ctx))[None, :]
    logits_c = logits_c.masked_fill(hidden[:, None, :], float("-inf"))
    logits_p = torch.einsum("chd,bnhd->bchn", q, k_p)
    probs = torch.cat([logits_p, logits_c.unsqueeze(0).expand(b, -1, -1, -1)], dim=-1).softmax(dim=-1)
    out = torch.einsum("bchn,bnhd->bchd", probs[..., :n_ctx], v_p)
    out = out + torch.einsum("bchl,clhd->bchd", probs[..., n_ctx:], v_c)
    out = F.linear(out.reshape(b, c, w), attn.out_proj.weight, attn.out_proj.bias)
    x = x_eot + block.ls_1(out)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def eot_attention_full(block: nn.Module, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
    """One text layer evaluated only at the EOT position; ``x [B, C, L, W]`` -> ``[B, C, W]``."""
    attn: nn.MultiheadAttention = block.attn
    b, c, length, w = x.shape
    h = attn.num_heads
    hd = w // h
    w_q, w_kv = attn.in_proj_weight[:w], attn.in_proj_weight[w:]
    b_q, b_kv = attn.in_proj_bias[:w], attn.in_proj_bias[w:]
    x_eot = x[:, torch.arange(c, device=x.device), eot]  # [B, C, W]
    q = F.linear(block.ln_1(x_eot), w_q, b_q).reshape(b, c, h, hd) * hd**-0.5
    k, v = F.linear(block.ln_1(x), w_kv, b_kv).reshape(b, c, length, 2, h, hd).unbind(3)
    logits = torch.einsum("bchd,bclhd->bchl", q, k)
    hidden = torch.arange(length, device=x.device)[None, :] > eot[:, None]  # [C, L]
    probs = logits.masked_fill(hidden[None, :, None, :], float("-inf")).softmax(dim=-1)
    out = torch.einsum("bchl,bclhd->bchd", probs, v).reshape(b, c, w)
    x = x_eot + block.ls_1(F.linear(out, attn.out_proj.weight, attn.out_proj.bias))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def common_prefix_length(tokens: torch.Tensor) -> int:
    """How many leading tokens all rows of ``tokens [C, L]`` share (never the EOT position)."""
    same = (tokens == tokens[:1]).all(dim=0)
    limit = int(tokens.argmax(dim=-1).min())
    differing = (~same[:limit]).nonzero()
    return int(differing[0]) if len(differing) else limit


def shared_prefix_layer(block: nn.Module, x_shared: torch.Tensor, x_class: torch.Tensor):
    """One causal text layer on prompts whose first positions are the same for every class.

    ``x_shared [1, p, W]`` holds those positions once (their states cannot depend on later tokens);
    ``x_class [C, L - p, W]`` the rest. Equal to running the layer on the full ``[C, L, W]`` batch,
    without repeating the shared positions' work for every class.
    """
    attn: nn.MultiheadAttention = block.attn
    c, rest, w = x_class.shape
    p = x_shared.shape[1]
    h = attn.num_heads

    def heads(z: torch.Tensor) -> torch.Tensor:
        return z.reshape(z.shape[0], z.shape[1], h, w // h).transpose(1, 2)

    qs, ks, vs = F.linear(block.ln_1(x_shared), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    qc, kc, vc = F.linear(block.ln_1(x_class), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    ys = F.scaled_dot_product_attention(heads(qs), heads(ks), heads(vs), is_causal=True)
    k = torch.cat([ks.expand(c, -1, -1), kc], dim=1)
    v = torch.cat([vs.expand(c, -1, -1), vc], dim=1)
    mask = torch.cat([x_class.new_zeros(rest, p), causal_mask(rest, x_class.device, x_class.dtype)], dim=1)
    yc = F.scaled_dot_product_attention(heads(qc), heads(k), heads(v), attn_mask=mask)

    def finish(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = F.linear(y.transpose(1, 2).reshape(x.shape), attn.out_proj.weight, attn.out_proj.bias)
        x = x + block.ls_1(y)
        return x + block.ls_2(block.mlp(block.ln_2(x)))

    return finish(x_shared, ys), finish(x_class, yc)
