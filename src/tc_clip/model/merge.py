"""Token aggregation: seed tokens of all frames -> k context tokens (SPEC.md section 1, steps 6).

The default is bipartite soft matching repeated on a fixed schedule; the other aggregations are the
ablations of the paper's Table 6. Every function works on a batch ``[B, n, D]`` and can also return,
for every output token, which input tokens it was built from (``sources [B, k, n]``, for analysis).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AGGREGATIONS = ("bipartite", "kmeans", "random", "tube", "none")


def merge_schedule(n: int, k: int, r: int) -> list[int]:
    """Number of tokens merged at each bipartite iteration to go from ``n`` tokens down to ``k``."""
    if k <= 0 or r <= 0:
        raise ValueError(f"need k > 0 and r > 0, got k={k}, r={r}")
    steps: list[int] = []
    cur = n
    for _ in range(max(n - k, 0) // r):
        merged = min(r, cur // 2)
        steps.append(merged)
        cur -= merged
    while cur > k:
        merged = min(cur - k, cur // 2)
        steps.append(merged)
        cur -= merged
    return steps


def bipartite_merge_step(
    x: torch.Tensor, size: torch.Tensor, r: int, sources: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Merge ``r`` tokens of ``x [B, n, D]`` (even positions) into their best match (odd positions).

    Tokens carry ``size [B, n, 1]``; a merge is the size-weighted mean. The output order is the unmerged
    even tokens sorted by descending best score, then every odd token in its own order.
    """
    a, b = x[:, ::2], x[:, 1::2]
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):  # matching in float32 under autocast
        scores = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).transpose(-1, -2)
        best, match = scores.max(dim=-1)
        order = best.argsort(dim=-1, descending=True, stable=True)
    src, keep = order[:, :r], order[:, r:]
    dst = match.gather(1, src)

    def take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return t.gather(1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

    size_a, size_b = size[:, ::2], size[:, 1::2]
    dst_d = dst.unsqueeze(-1)
    weighted_b = (b * size_b).scatter_add(1, dst_d.expand(-1, -1, b.shape[-1]), take(a * size_a, src))
    new_size_b = size_b.scatter_add(1, dst_d, take(size_a, src))
    merged_b = weighted_b / new_size_b

    out = torch.cat([take(a, keep), merged_b], dim=1)
    out_size = torch.cat([take(size_a, keep), new_size_b], dim=1)
    if sources is not None:
        src_a, src_b = sources[:, ::2], sources[:, 1::2]
        src_b = src_b.scatter_add(1, dst_d.expand(-1, -1, src_b.shape[-1]), take(src_a, src))
        sources = torch.cat([take(src_a, keep), src_b], dim=1)
    return out, out_size, sources


def bipartite_merge(
    x: torch.Tensor, k: int, r: int, track_sources: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Repeated bipartite matching of ``x [B, n, D]`` down to ``k`` tokens (sizes start at 1)."""
    b, n, _ = x.shape
    size = x.new_ones(b, n, 1)
    sources = torch.eye(n, device=x.device, dtype=x.dtype).expand(b, n, n) if track_sources else None
    for merged in merge_schedule(n, k, r):
        x, size, sources = bipartite_merge_step(x, size, merged, sources)
    return x, sources


def _group_mean(x: torch.Tensor, assign: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the tokens of ``x [B, n, D]`` in each of ``k`` groups given by ``assign [B, n]``."""
    one_hot = F.one_hot(assign, k).to(x.dtype).transpose(1, 2)  # [B, k, n]
    counts = one_hot.sum(-1, keepdim=True).clamp_min(1)
    return one_hot @ x / counts, one_hot


def kmeans_merge(x: torch.Tensor, k: int, iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine k-means with evenly spaced initial centres; context tokens are the cluster means."""
    n = x.shape[1]
    init = torch.linspace(0, n - 1, k, device=x.device).round().long()
    with torch.no_grad():
        feats = F.normalize(x, dim=-1)
        centres = feats[:, init]
        for _ in range(iters):
            assign = (feats @ centres.transpose(-1, -2)).argmax(-1)
            means, one_hot = _group_mean(feats, assign, k)
            empty = one_hot.sum(-1, keepdim=True) == 0
            centres = torch.where(empty, centres, F.normalize(means, dim=-1))
        assign = (feats @ centres.transpose(-1, -2)).argmax(-1)
    return _group_mean(x, assign, k)


def random_merge(
    x: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token joins one of ``k`` groups at random (every group gets at least one token)."""
    b, n, _ = x.shape
    perm = torch.stack([torch.randperm(n, generator=generator) for _ in range(b)]).to(x.device)
    assign = torch.empty_like(perm)
    assign.scatter_(1, perm, (torch.arange(n, device=x.device) % k).expand(b, n).contiguous())
    return _group_mean(x, assign, k)


def tube_merge(x: torch.Tensor, k: int, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal tubes: token j of every frame forms one tube; the tubes are pooled down to ``k``."""
    b, n, _ = x.shape
    per_frame = n // num_frames
    rank = torch.arange(n, device=x.device) % per_frame
    tube = (rank * k) // per_frame if per_frame >= k else rank
    groups = int(tube.max()) + 1
    return _group_mean(x, tube.expand(b, n), groups)


def aggregate(
    x: torch.Tensor,
    method: str,
    k: int,
    r: int,
    num_frames: int,
    track_sources: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Turn seed tokens ``x [B, n, D]`` into context tokens with the chosen ``method``."""
    if method == "bipartite":
        return bipartite_merge(x, k, r, track_sources)
    if method == "none":
        eye = torch.eye(x.shape[1], device=x.device, dtype=x.dtype).expand(x.shape[0], -1, -1)
        return x, eye if track_sources else None
    if method == "kmeans":
        out, sources = kmeans_merge(x, k)
    elif method == "random":
        out, sources = random_merge(x, k)
    elif method == "tube":
        out, sources = tube_merge(x, k, num_frames)
    else:
        raise ValueError(f"unknown token aggregation {method!r}; expected one of {AGGREGATIONS}")
    return out, sources if track_sources else None
