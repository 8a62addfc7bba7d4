"""Figures of TC-CLIP's predictions and internals (the paper's qualitative figures) for any video.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no global state,
no GUI backend needed): show it in a notebook (``%matplotlib inline``, then ``fig`` or ``display(fig)``)
or save it from a script (``fig.savefig("seeds.png")``).

Inputs come from :func:`tc_clip.inference.read_clip` (display frames ``uint8 [T, H, W, 3]``) and from
``model(video, return_aux=True)`` / :func:`tc_clip.inference.explain` (a ``VisionOutput``). Per-layer
quantities can be passed as the per-layer list (``aux.seed_indices``; ``layer`` picks one), as one
layer's tensor with a batch dimension (``video_index`` picks the video) or without one.

Patch ``p`` of a ``gh x gw`` grid is row ``p // gw``, column ``p % gw``; the frames are assumed to show
the model's crop (any resolution), so the grid is stretched over them.

Number of panels (axes of the figure) for T frames:

================================  ==========
:func:`plot_topk`                 ``T + 1``
:func:`plot_seed_tokens`          ``T``
:func:`plot_context_token_sources` ``T``
:func:`plot_cls_attention`        ``2 * T``
================================  ==========
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import hsv_to_rgb, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = [
    "context_token_of",
    "panel_count",
    "plot_cls_attention",
    "plot_context_token_sources",
    "plot_seed_tokens",
    "plot_topk",
]

_PANEL = 1.6  # inches per frame panel


def panel_count(kind: str, num_frames: int) -> int:
    """How many axes the figure ``kind`` ("topk", "seed_tokens", "context_token_sources",
    "cls_attention") has for ``num_frames`` frames."""
    counts = {
        "topk": num_frames + 1,
        "seed_tokens": num_frames,
        "context_token_sources": num_frames,
        "cls_attention": 2 * num_frames,
    }
    if kind not in counts:
        raise ValueError(f"unknown figure {kind!r}; expected one of {sorted(counts)}")
    return counts[kind]


# ------------------------------------------------------------------------------------------ inputs
def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def _frames(frames: Any) -> np.ndarray:
    """Display frames as ``[T, H, W, 3]`` floats in 0..1 (uint8 0..255 or floats 0..1 accepted;
    ``[T, 3, H, W]`` is transposed; a leading batch of one is dropped)."""
    f = _numpy(frames)
    if f.ndim == 5 and f.shape[0] == 1:
        f = f[0]
    if f.ndim != 4:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {f.shape}")
    if f.shape[-1] not in (1, 3) and f.shape[1] in (1, 3):
        f = f.transpose(0, 2, 3, 1)
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    if f.dtype == np.uint8 or f.max(initial=0) > 1.0:
        f = f.astype(np.float32) / 255.0
    return np.clip(f.astype(np.float32), 0.0, 1.0)


def _layer(values: Any, layer: int, video_index: int, ndim: int, what: str) -> np.ndarray:
    """Pick one layer (from a per-layer list) and one video (from a batch): an array with ``ndim`` dims."""
    if isinstance(values, (list, tuple)):
        if not values:
            raise ValueError(
                f"no {what}: run the model with return_aux=True; a model without Temporal "
                "Contextualization (use_tc=False) has no seed or context tokens"
            )
        try:
            values = values[layer]
        except IndexError:
            raise IndexError(f"layer {layer} out of range: {what} has {len(values)} layers") from None
        if values is None:
            raise ValueError(f"{what} has no entry for layer {layer} (a model without TC has no {what})")
    arr = _numpy(values)
    if arr.ndim == ndim + 1:
        arr = arr[video_index]
    if arr.ndim != ndim:
        raise ValueError(f"{what}: expected {ndim} dimensions (or {ndim + 1} with a batch), got {arr.shape}")
    return arr


def _layer_label(values: Any, layer: int) -> str:
    if isinstance(values, (list, tuple)) and values:
        return f" (layer {layer % len(values)})"
    return ""


def _token_colours(k: int, cmap: str | None) -> np.ndarray:
    """``k`` distinct RGB colours: ``cmap`` sampled evenly, or (default) tab20 for up to 20 tokens and
    golden-ratio spaced hues beyond, so neighbouring token ids never look alike."""
    if cmap is not None:
        pal = colormaps[cmap]
        return np.array([pal(j / max(k - 1, 1))[:3] for j in range(k)], np.float32)
    if k <= 20:
        pal = colormaps["tab20"]
        return np.array([pal(j)[:3] for j in range(k)], np.float32)
    hues = (np.arange(k) * 0.618033988749895) % 1.0
    sat = 0.65 + 0.35 * (np.arange(k) % 2)
    val = 0.95 - 0.25 * ((np.arange(k) // 2) % 2)
    return hsv_to_rgb(np.stack([hues, sat, val], axis=-1)).astype(np.float32)


def _grid(grid_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(grid_size, int):
        return grid_size, grid_size
    gh, gw = grid_size
    return int(gh), int(gw)


def _layout(n: int, ncols: int | None) -> tuple[int, int]:
    ncols = min(n, ncols or 8)
    return math.ceil(n / ncols), ncols


def _frame_axes(fig: Figure, n: int, rows: int, cols: int, first_row: int = 0, gs=None) -> list:
    """``n`` image axes in a ``rows x cols`` block of ``gs`` starting at ``first_row``."""
    gs = gs if gs is not None else fig.add_gridspec(rows, cols)
    axes = []
    for i in range(n):
        ax = fig.add_subplot(gs[first_row + i // cols, i % cols])
        ax.set_xticks([])
        ax.set_yticks([])
        axes.append(ax)
    return axes


def _show(ax, frame: np.ndarray, grid: tuple[int, int] | None = None, gridlines: bool = False) -> None:
    h, w = frame.shape[:2]
    ax.imshow(frame, extent=(0, w, h, 0), interpolation="nearest" if max(h, w) <= 128 else "antialiased")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    if gridlines and grid is not None:
        gh, gw = grid
        for r in range(1, gh):
            ax.axhline(r * h / gh, color="white", lw=0.3, alpha=0.35)
        for c in range(1, gw):
            ax.axvline(c * w / gw, color="white", lw=0.3, alpha=0.35)


def _patch_map(values: np.ndarray, grid: tuple[int, int], what: str) -> np.ndarray:
    gh, gw = grid
    if values.shape[-1] != gh * gw:
        raise ValueError(f"{what} has {values.shape[-1]} patches per frame, the grid {gh}x{gw} has {gh * gw}")
    return values.reshape(*values.shape[:-1], gh, gw)


def _check_frames(frames: np.ndarray, t: int, what: str) -> None:
    if frames.shape[0] != t:
        raise ValueError(f"{frames.shape[0]} frames but {what} is for {t} frames")


# ---------------------------------------------------------------------------------------- figures
def plot_topk(
    frames: Any,
    predictions: Sequence[tuple[str, float]],
    title: str | None = None,
    frame_titles: bool = True,
) -> Figure:
    """The sampled frames in a row and, below, a horizontal bar chart of the top-k predictions
    (``[(class name, probability), ...]`` best first, as :func:`tc_clip.inference.predict` returns).

    Panels: ``T`` frames + 1 bar chart."""
    f = _frames(frames)
    t = f.shape[0]
    names = [str(n) for n, _ in predictions]
    probs = [float(p) for _, p in predictions]
    k = max(len(predictions), 1)
    width = max(6.0, _PANEL * min(t, 8))
    frame_rows = math.ceil(t / 8)
    cols = min(t, 8)
    fig = Figure(figsize=(width, _PANEL * frame_rows + 0.45 * k + 1.0), layout="constrained")
    gs = fig.add_gridspec(frame_rows + 1, cols, height_ratios=[_PANEL] * frame_rows + [0.45 * k + 0.4])
    for i, ax in enumerate(_frame_axes(fig, t, frame_rows, cols, gs=gs)):
        _show(ax, f[i])
        if frame_titles:
            ax.set_title(f"frame {i}", fontsize=8)
    ax = fig.add_subplot(gs[frame_rows, :])
    y = np.arange(len(names))
    colours = ["tab:blue"] + ["tab:gray"] * max(len(names) - 1, 0)
    ax.barh(y, probs, color=colours[: len(names)])
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    for yi, p in zip(y, probs, strict=True):
        ax.text(min(p + 0.01, 0.9), yi, f"{p:.1%}", va="center", fontsize=8)
    if not names:
        ax.text(0.5, 0.5, "no predictions", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title or (f"top-{len(names)}: {names[0]} ({probs[0]:.1%})" if names else "predictions"))
    return fig


def plot_seed_tokens(
    frames: Any,
    seed_indices: Any,
    grid_size: int | Sequence[int],
    layer: int = -1,
    video_index: int = 0,
    ncols: int | None = None,
    color: str = "yellow",
    show_rank: bool = True,
) -> Figure:
    """One panel per frame with that frame's seed tokens (the patches the CLS token attends to most,
    which TC merges into the context tokens) marked on the patch grid; with ``show_rank`` the boxes of
    higher-ranked seeds are more opaque.

    ``seed_indices``: ``VisionOutput.seed_indices`` (per layer ``[B, T, m]``) or one layer's
    ``[B, T, m]`` / ``[T, m]``. Panels: ``T``."""
    f = _frames(frames)
    idx = _layer(seed_indices, layer, video_index, 2, "seed_indices").astype(np.int64)
    t, m = idx.shape
    _check_frames(f, t, "seed_indices")
    gh, gw = _grid(grid_size)
    if idx.size and (idx.min() < 0 or idx.max() >= gh * gw):
        raise ValueError(f"seed indices out of range for a {gh}x{gw} grid")
    rows, cols = _layout(t, ncols)
    fig = Figure(figsize=(_PANEL * cols, _PANEL * rows + 0.6), layout="constrained")
    rgb = to_rgb(color)
    for i, ax in enumerate(_frame_axes(fig, t, rows, cols)):
        h, w = f[i].shape[:2]
        ph, pw = h / gh, w / gw
        _show(ax, f[i], (gh, gw), gridlines=True)
        for rank, p in enumerate(idx[i]):
            r, c = divmod(int(p), gw)
            alpha = 0.65 - 0.45 * rank / max(m - 1, 1) if show_rank else 0.5
            ax.add_patch(Rectangle((c * pw, r * ph), pw, ph, facecolor=(*rgb, alpha), edgecolor=rgb, lw=0.6))
        ax.set_title(f"frame {i}", fontsize=8)
    fig.suptitle(f"seed tokens: top {m} of {gh * gw} patches per frame{_layer_label(seed_indices, layer)}")
    return fig


def plot_context_token_sources(
    frames: Any,
    context_sources: Any,
    grid_size: int | Sequence[int],
    token: int | str | None = None,
    layer: int = -1,
    video_index: int = 0,
    ncols: int | None = None,
    cmap: str | None = None,
    alpha: float = 0.6,
) -> Figure:
    """Which patches, across all frames, each context token summarises.

    ``token=None``: every seed patch is coloured by the context token it was merged into (the token with
    the largest share of it), one colour per token, the same colour in every frame: a token that follows
    an object through the video paints it in every frame. ``token=j`` (or ``"largest"``, the token with
    the most source patches): only context token ``j`` is shown, its source patches highlighted across
    all frames (opacity = its share of the patch), the rest dimmed.

    ``context_sources``: ``VisionOutput.context_sources`` (per layer ``[B, k, T, P]``) or one layer's
    ``[B, k, T, P]`` / ``[k, T, P]``. Panels: ``T``."""
    f = _frames(frames)
    src = _layer(context_sources, layer, video_index, 3, "context_sources").astype(np.float32)
    k, t, p = src.shape
    _check_frames(f, t, "context_sources")
    gh, gw = _grid(grid_size)
    src = _patch_map(src, (gh, gw), "context_sources")  # [k, T, gh, gw]
    if isinstance(token, str):
        if token != "largest":
            raise ValueError(f"token must be None, an int or 'largest', got {token!r}")
        token = int((src > 0).sum(axis=(1, 2, 3)).argmax())
    if token is not None and not -k <= token < k:
        raise IndexError(f"token {token} out of range for {k} context tokens")
    if token is not None:
        token = token % k

    rows, cols = _layout(t, ncols)
    fig = Figure(figsize=(_PANEL * cols, _PANEL * rows + 0.6), layout="constrained")
    colours = _token_colours(k, cmap)
    total = src.sum(axis=0)  # [T, gh, gw]
    owner = src.argmax(axis=0)
    for i, ax in enumerate(_frame_axes(fig, t, rows, cols)):
        h, w = f[i].shape[:2]
        if token is None:
            overlay = np.zeros((gh, gw, 4), np.float32)
            overlay[..., :3] = colours[owner[i]]
            overlay[..., 3] = np.where(total[i] > 0, alpha, 0.0)
            _show(ax, f[i] * 0.85, (gh, gw), gridlines=False)
        else:
            share = np.divide(src[token, i], total[i], out=np.zeros_like(total[i]), where=total[i] > 0)
            overlay = np.zeros((gh, gw, 4), np.float32)
            overlay[..., :3] = colours[token]
            overlay[..., 3] = alpha * share
            _show(ax, f[i] * 0.45, (gh, gw), gridlines=False)  # dimmed: the token's patches stand out
            for r, c in zip(*np.nonzero(share > 0), strict=True):
                ax.add_patch(Rectangle((c * w / gw, r * h / gh), w / gw, h / gh, fill=False,
                                       edgecolor=colours[token], lw=0.8))
        ax.imshow(overlay, extent=(0, w, h, 0), interpolation="nearest")
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(f"frame {i}", fontsize=8)
    if token is None:
        fig.suptitle(f"context tokens: each of the {k} tokens colours its source patches across frames"
                     f"{_layer_label(context_sources, layer)}")
    else:
        n_src = int((src[token] > 0).sum())
        fig.suptitle(f"context token {token}: its {n_src} source patches across the {t} frames"
                     f"{_layer_label(context_sources, layer)}")
    return fig


def context_token_of(
    context_sources: Any, frame: int, patch: int, layer: int = -1, video_index: int = 0
) -> int | None:
    """The context token that patch ``patch`` of frame ``frame`` was merged into (the one holding the
    largest share of it), or None if that patch was not a seed token. E.g. the token holding the top
    seed of frame ``t``: ``context_token_of(aux.context_sources, t, int(aux.seed_indices[-1][0, t, 0]))``."""
    src = _layer(context_sources, layer, video_index, 3, "context_sources")
    column = src[:, frame, patch]
    if not (column > 0).any():
        return None
    return int(column.argmax())


def _normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Min-max per frame, so every frame's map spans the colour scale."""
    lo = maps.min(axis=(-2, -1), keepdims=True)
    hi = maps.max(axis=(-2, -1), keepdims=True)
    return np.divide(maps - lo, hi - lo, out=np.zeros_like(maps), where=(hi - lo) > 0)


def plot_cls_attention(
    frames: Any,
    attn_tc: Any,
    attn_baseline: Any,
    grid_size: int | Sequence[int],
    layer: int = -1,
    video_index: int = 0,
    labels: tuple[str, str] = ("TC-CLIP", "baseline"),
    cmap: str = "jet",
    alpha: float = 0.5,
    normalize: bool = True,
) -> Figure:
    """CLS-token attention over each frame's patches overlaid on the frames: TC-CLIP in the first row,
    the frame-averaging baseline in the second (the paper's Fig. 7 / 10).

    ``attn_tc``/``attn_baseline``: ``VisionOutput.cls_attention`` (per layer ``[B, T, P]``, head-averaged
    probabilities) or one layer's ``[B, T, P]`` / ``[T, P]``. TC-CLIP's CLS token also attends to the
    context tokens, so its patch probabilities do not sum to one; with ``normalize`` every map is scaled
    to its own min..max. Panels: ``2 * T`` (2 rows x T)."""
    f = _frames(frames)
    maps = []
    for what, values in (("attn_tc", attn_tc), ("attn_baseline", attn_baseline)):
        a = _layer(values, layer, video_index, 2, what).astype(np.float32)
        _check_frames(f, a.shape[0], what)
        maps.append(_patch_map(a, _grid(grid_size), what))
    if normalize:
        maps = [_normalise_maps(m) for m in maps]
    vmax = 1.0 if normalize else float(max(m.max() for m in maps))
    t = f.shape[0]
    fig = Figure(figsize=(_PANEL * t, 2 * _PANEL + 0.6), layout="constrained")
    gs = fig.add_gridspec(2, t)
    axes = _frame_axes(fig, 2 * t, 2, t, gs=gs)
    for row, (label, m) in enumerate(zip(labels, maps, strict=True)):
        for i in range(t):
            ax = axes[row * t + i]
            h, w = f[i].shape[:2]
            _show(ax, f[i])
            ax.imshow(m[i], extent=(0, w, h, 0), cmap=cmap, alpha=alpha, vmin=0.0, vmax=vmax,
                      interpolation="bilinear")
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
            if row == 0:
                ax.set_title(f"frame {i}", fontsize=8)
            if i == 0:
                ax.set_ylabel(label)
    fig.suptitle("CLS attention over patches" + _layer_label(attn_tc, layer)
                 + (": each map scaled to its own range" if normalize else ""))
    return fig
