"""Frame sampling (TSN) and clip transforms of SPEC section 5.

Clips are ``uint8`` tensors ``[T, 3, H, W]``. Crop, flip, grayscale and whether to jitter are drawn once
per clip; the colour-jitter factors and their order are drawn per frame (SPEC 5b). The geometric part
(:func:`train_geometry`, :func:`eval_crops`) keeps ``uint8``; the colour part draws its parameters with
:func:`draw_augment` so that it can run here (:func:`augment_clip`) or batched on the device
(:mod:`tc_clip.data.gpu_augment`) with the same result.
"""

from __future__ import annotations

import random

import torch
from torchvision.transforms import v2

__all__ = [
    "MEAN",
    "STD",
    "train_indices",
    "eval_indices",
    "MultiScaleCrop",
    "ClipAugment",
    "adjust_hue",
    "colour_op",
    "draw_augment",
    "augment_clip",
    "Normalize255",
    "train_geometry",
    "train_transform",
    "eval_crops",
    "eval_transform",
    "resize_short_side",
    "decode_short_side",
]

#: normalisation of the release, on 0-255 values
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def train_indices(n: int, num_frames: int, rng: random.Random | None = None) -> list[int]:
    """TSN training sampling, one frame per segment: ``seg = n // T``, frame ``i = i*seg + randint(seg)``.

    When ``seg == 0`` (fewer frames than ``T``) the positions are spread evenly and rounded
    (``round(i * (n - 1) / (T - 1))``), so short videos repeat frames in order.
    """
    rng = rng or random
    if n <= 0:
        raise ValueError("a video needs at least one frame")
    seg = n // num_frames
    if seg > 0:
        return [i * seg + rng.randrange(seg) for i in range(num_frames)]
    if n >= num_frames:  # not reachable with seg = n // T, kept for clarity of the spec's cases
        return sorted(rng.sample(range(n), num_frames))
    if num_frames == 1:
        return [0]
    return [round(i * (n - 1) / (num_frames - 1)) for i in range(num_frames)]


def eval_indices(n: int, num_frames: int, view: int = 0, views: int = 1) -> list[int]:
    """Centred TSN sampling: ``seg = n / T``, frame ``i = int(i*seg + seg/2)`` for a single view.

    With ``views`` temporal views, view ``v`` takes the offset ``seg * (2v + 1) / (2 * views)`` inside
    every segment, so the views are deterministic and spread evenly (``views=1`` is the centre).
    """
    if n <= 0:
        raise ValueError("a video needs at least one frame")
    if not 0 <= view < views:
        raise ValueError(f"view {view} out of range for {views} views")
    seg = n / num_frames
    offset = seg * (2 * view + 1) / (2 * views)
    return [min(int(i * seg + offset), n - 1) for i in range(num_frames)]


def resize_short_side(size: int) -> int:
    """Short side used before cropping for input size ``size``: ``int(256 / 224 * size)``."""
    return int(256 / 224 * size)


class MultiScaleCrop(torch.nn.Module):
    """Crop a box whose sides are picked from ``scales`` times the short side (the two sides at most
    ``max_distort`` scale levels apart), at one of five fixed positions (the four corners and the
    centre); one draw per call, applied to all frames of ``[..., H, W]``."""

    def __init__(self, scales: tuple[float, ...] = (1, 0.875, 0.75, 0.66), max_distort: int = 1):
        super().__init__()
        self.scales = tuple(scales)
        self.max_distort = max_distort

    def params(self, height: int, width: int) -> tuple[int, int, int, int]:
        base = min(height, width)
        sizes = [int(base * s) for s in self.scales]
        pairs = [
            (h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= self.max_distort
        ]
        ch, cw = pairs[int(torch.randint(len(pairs), ()).item())]
        dy, dx = (height - ch) // 4, (width - cw) // 4
        positions = [(0, 0), (0, 4 * dx), (4 * dy, 0), (4 * dy, 4 * dx), (2 * dy, 2 * dx)]
        top, left = positions[int(torch.randint(len(positions), ()).item())]
        return top, left, ch, cw

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        top, left, ch, cw = self.params(clip.shape[-2], clip.shape[-1])
        return clip[..., top : top + ch, left : left + cw]

    def extra_repr(self) -> str:
        return f"scales={self.scales}, max_distort={self.max_distort}"


class Normalize255(torch.nn.Module):
    """uint8 (or 0-255 float) ``[..., 3, H, W]`` -> float32 normalised with the release's mean/std."""

    def __init__(self, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return (clip.float() - self.mean) / self.std


def _gray(clip: torch.Tensor) -> torch.Tensor:
    r, g, b = clip.unbind(-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def adjust_hue(clip: torch.Tensor, shift: float | torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """HSV hue rotation of float 0-255 RGB ``[..., 3, H, W]`` by ``shift`` (in turns, -0.5..0.5).

    Same result as torchvision's ``adjust_hue`` up to float rounding, several times faster: value and
    saturation are kept, so with the new hue ``h`` in ``[0, 6)``, ``v = max`` and ``c = max - min`` the
    output is ``v - c * w`` with ``w`` = ``clamp(2 - |h - 3|, 0, 1)`` (red), ``clamp(|h - 2| - 1, 0, 1)``
    (green) and ``clamp(|h - 4| - 1, 0, 1)`` (blue). ``out`` may be ``clip`` itself (in place).
    """
    r, g, b = clip.unbind(-3)
    v = clip.amax(-3)
    c = v - clip.amin(-3)
    safe = c.masked_fill(c == 0, 1.0)  # gray pixels: any hue, the output is v
    h = torch.where(v == r, g - b, torch.where(v == g, (b - r).add_(safe, alpha=2), (r - g).add_(safe, alpha=4)))
    h = h.div_(safe).add_(6 * shift).remainder_(6)
    out = torch.empty_like(clip) if out is None else out  # r, g, b are not read from here on
    for channel, centre in enumerate((3.0, 2.0, 4.0)):
        weight = (h - centre).abs_()
        weight = (weight.neg_().add_(2) if channel == 0 else weight.sub_(1)).clamp_(0, 1)
        torch.sub(v, weight.mul_(c), out=out.select(-3, channel))
    return out


#: colour-jitter ranges of the release: brightness, contrast, saturation, hue
JITTER = (0.4, 0.4, 0.2, 0.1)
#: the factor of each jitter operation that leaves a frame unchanged (the operation is skipped)
IDENTITY = (1.0, 1.0, 1.0, 0.0)


def colour_op(x: torch.Tensor, op: int, factor: torch.Tensor | float) -> torch.Tensor:
    """Jitter operation ``op`` (0 brightness, 1 contrast, 2 saturation, 3 hue) of float 0-255 frames
    ``[..., 3, H, W]``, in place where it can. ``factor`` is a number or one value per frame ``[...]``.

    Brightness/contrast/saturation as torchvision (contrast blends with the mean gray level of each
    frame); hue uses :func:`adjust_hue`.
    """
    if isinstance(factor, torch.Tensor):
        factor = factor.reshape(factor.shape + (1,) * (2 if op == 3 else 3))
    if op == 0:
        return x.mul_(factor).clamp_(0, 255)
    if op == 1:  # blend with the mean gray level: factor * x + (1 - factor) * mean
        return x.lerp_(_gray(x).mean(dim=(-3, -2, -1), keepdim=True), 1 - factor).clamp_(0, 255)
    if op == 2:
        return x.lerp_(_gray(x), 1 - factor).clamp_(0, 255)
    return adjust_hue(x, factor)


def draw_augment(
    num_frames: int,
    flip: bool = True,
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
    jitter: tuple[float, float, float, float] = JITTER,
) -> dict[str, torch.Tensor]:
    """The random draws of the colour/flip augmentation of one clip (SPEC 5b), from torch's RNG.

    Per clip: ``flip`` (p 0.5, never when ``flip`` is off), ``jitter`` (p ``jitter_p``) and ``gray``
    (p ``gray_p``). Per frame: ``factors [T, 4]`` (brightness, contrast, saturation: uniform in
    ``[max(0, 1 - a), 1 + a]``; hue: uniform in ``[-a, a]``; identity where the amount is 0) and
    ``order [T, 4]``, the order of the four operations. The same draws are made whatever is enabled,
    so the RNG advances by the same amount for every clip.
    """
    flip_draw, jitter_draw, gray_draw = torch.rand(3).unbind()
    u = torch.rand(num_frames, 4)
    order = torch.rand(num_frames, 4).argsort(dim=-1)
    lo = torch.tensor([max(0.0, 1 - a) for a in jitter[:3]] + [-jitter[3]])
    hi = torch.tensor([1 + a for a in jitter[:3]] + [jitter[3]])
    factors = torch.where(torch.tensor(jitter) > 0, lo + (hi - lo) * u, torch.tensor(IDENTITY))
    return {
        "flip": flip_draw < (0.5 if flip else 0.0),
        "jitter": jitter_draw < jitter_p,
        "gray": gray_draw < gray_p,
        "factors": factors,
        "order": order,
    }


def augment_clip(clip: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Reference colour/flip augmentation of one ``uint8 [T, 3, S, S]`` clip with the draws ``params``
    of :func:`draw_augment`: per-frame colour jitter, grayscale, flip, normalisation -> float32.

    Frame by frame on purpose: :func:`tc_clip.data.gpu_augment.augment_batch` computes the same on a
    whole batch and is tested against this.
    """
    x = clip.to(torch.float32, copy=True)
    if params["jitter"]:
        frames = []
        for frame, factors, order in zip(x, params["factors"].tolist(), params["order"].tolist(), strict=True):
            for op in order:
                if factors[op] != IDENTITY[op]:
                    frame = colour_op(frame, op, factors[op])
            frames.append(frame)
        x = torch.stack(frames)
    if params["gray"]:
        x = _gray(x).expand_as(x)
    if params["flip"]:
        x = x.flip(-1)
    return Normalize255()(x)


class ClipAugment(torch.nn.Module):
    """Colour jitter (p 0.8 per clip, factors and order per frame), grayscale (p 0.2) and flip (p 0.5)
    per clip, then normalisation: ``uint8 [T, 3, S, S]`` -> float32 (SPEC 5 and 5b)."""

    def __init__(self, flip: bool = True):
        super().__init__()
        self.flip = flip

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return augment_clip(clip, draw_augment(clip.shape[0], self.flip))

    def extra_repr(self) -> str:
        return f"flip={self.flip}, jitter={JITTER}, jitter_p=0.8, gray_p=0.2"


def train_geometry(size: int = 224) -> v2.Compose:
    """The geometric part of the training augmentation, on ``uint8 [T, 3, H, W]`` -> ``uint8 [T, 3, S, S]``:
    short side to ``int(256/224*S)``, multi-scale crop (one draw per clip), resize to ``S x S``."""
    return v2.Compose([
        v2.Resize(resize_short_side(size), antialias=True),
        MultiScaleCrop(),
        v2.Resize((size, size), antialias=True),
    ])


def train_transform(size: int = 224, flip: bool = True) -> v2.Compose:
    """SPEC's training augmentation for ``uint8 [T, 3, H, W]`` clips -> normalised ``[T, 3, S, S]``,
    all on the CPU (:func:`train_geometry`, then :class:`ClipAugment`)."""
    return v2.Compose([*train_geometry(size).transforms, ClipAugment(flip)])


def _three_crops(clip: torch.Tensor, size: int) -> list[torch.Tensor]:
    h, w = clip.shape[-2:]
    if w >= h:
        top = (h - size) // 2
        lefts = [0, (w - size) // 2, w - size]
        return [clip[..., top : top + size, x : x + size] for x in lefts]
    left = (w - size) // 2
    tops = [0, (h - size) // 2, h - size]
    return [clip[..., y : y + size, left : left + size] for y in tops]


def eval_crops(clip: torch.Tensor, size: int = 224, crops: int = 1) -> torch.Tensor:
    """Test-time resize and crops of ``uint8 [T, 3, H, W]`` -> ``uint8 [crops, T, 3, S, S]``.

    One crop: resize the short side to ``int(256/224*S)`` and take the centre ``S x S``; three crops:
    resize the short side to ``S`` and take three ``S x S`` crops along the long side.
    """
    if crops == 1:
        clip = v2.functional.resize(clip, [resize_short_side(size)], antialias=True)
        return v2.functional.center_crop(clip, [size, size])[None]
    if crops == 3:
        clip = v2.functional.resize(clip, [size], antialias=True)
        if min(clip.shape[-2:]) < size:  # rounding made the short side smaller than S
            clip = v2.functional.resize(clip, [size, max(size, clip.shape[-1])], antialias=True)
        return torch.stack(_three_crops(clip, size))
    raise ValueError(f"crops must be 1 or 3, got {crops}")


def eval_transform(clip: torch.Tensor, size: int = 224, crops: int = 1) -> torch.Tensor:
    """Test-time transform of ``uint8 [T, 3, H, W]`` -> normalised ``[crops, T, 3, S, S]``
    (:func:`eval_crops`, then normalisation)."""
    return Normalize255()(eval_crops(clip, size, crops))


def decode_short_side(size: int, crops: int = 1) -> int:
    """Short side the decoder may shrink frames to before the transforms (never below what they need)."""
    return size if crops == 3 else resize_short_side(size)
