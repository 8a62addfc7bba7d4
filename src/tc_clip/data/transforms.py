"""Frame sampling (TSN) and clip transforms of SPEC section 5.

Clips are ``uint8`` tensors ``[T, 3, H, W]``; ``torchvision.transforms.v2`` treats the leading ``T`` as a
batch dimension, so every random choice (crop, flip, colour jitter, grayscale) is drawn once per clip
and applied to all its frames.
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
    "ClipColorJitter",
    "adjust_hue",
    "Normalize255",
    "train_transform",
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


def adjust_hue(clip: torch.Tensor, shift: float) -> torch.Tensor:
    """HSV hue rotation of float 0-255 RGB ``[..., 3, H, W]`` by ``shift`` (in turns, -0.5..0.5).

    Same result as torchvision's ``adjust_hue`` up to float rounding, several times faster: value and
    saturation are kept, so the output is ``v - c * clamp(min(k, 4 - k), 0, 1)`` with
    ``k = (n + 6 * hue) mod 6`` for ``n = 5, 3, 1`` (red, green, blue), ``v = max``, ``c = max - min``.
    """
    r, g, b = clip.unbind(-3)
    v = clip.amax(-3)
    c = v - clip.amin(-3)
    safe = c.masked_fill(c == 0, 1.0)  # gray pixels: any hue, the output is v
    h = torch.where(v == r, g - b, torch.where(v == g, (b - r).add_(safe, alpha=2), (r - g).add_(safe, alpha=4)))
    h = h.div_(safe).add_(6 * shift).remainder_(6)
    out = torch.empty_like(clip)
    for channel, n in enumerate((5.0, 3.0, 1.0)):
        k = h + n
        k = k.sub_((k >= 6).to(k.dtype), alpha=6)  # (h + n) mod 6, h already in [0, 6)
        weight = torch.minimum(k, 4 - k).clamp_(0, 1)
        torch.sub(v, weight.mul_(c), out=out.select(-3, channel))
    return out


class ClipColorJitter(torch.nn.Module):
    """Colour jitter with one draw per clip (factors and the order of the four operations), on 0-255
    values (uint8 in, float32 out). Brightness/contrast/saturation as torchvision (contrast blends
    with the mean gray level of each frame); hue uses :func:`adjust_hue`."""

    def __init__(
        self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.2, hue: float = 0.1
    ):
        super().__init__()
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    @staticmethod
    def _factor(amount: float) -> float | None:
        if amount <= 0:
            return None
        return float(torch.empty(()).uniform_(max(0.0, 1 - amount), 1 + amount))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        x = clip.to(torch.float32, copy=True)
        order = torch.randperm(4).tolist()
        b, c, s = self._factor(self.brightness), self._factor(self.contrast), self._factor(self.saturation)
        h = float(torch.empty(()).uniform_(-self.hue, self.hue)) if self.hue > 0 else None
        for op in order:  # x is our own float copy: update it in place
            if op == 0 and b is not None:
                x.mul_(b).clamp_(0, 255)
            elif op == 1 and c is not None:
                mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
                x.mul_(c).add_(mean, alpha=1 - c).clamp_(0, 255)
            elif op == 2 and s is not None:
                gray = _gray(x)
                x.mul_(s).add_(gray, alpha=1 - s).clamp_(0, 255)
            elif op == 3 and h is not None:
                x = adjust_hue(x, h)
        return x

    def extra_repr(self) -> str:
        b, c, s, h = self.brightness, self.contrast, self.saturation, self.hue
        return f"brightness={b}, contrast={c}, saturation={s}, hue={h}"


def train_transform(size: int = 224, flip: bool = True) -> v2.Compose:
    """SPEC's training augmentation for ``uint8 [T, 3, H, W]`` clips -> normalised ``[T, 3, S, S]``."""
    steps: list = [
        v2.Resize(resize_short_side(size), antialias=True),
        MultiScaleCrop(),
        v2.Resize((size, size), antialias=True),
    ]
    if flip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    steps += [
        v2.RandomApply([ClipColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        Normalize255(),
    ]
    return v2.Compose(steps)


def _three_crops(clip: torch.Tensor, size: int) -> list[torch.Tensor]:
    h, w = clip.shape[-2:]
    if w >= h:
        top = (h - size) // 2
        lefts = [0, (w - size) // 2, w - size]
        return [clip[..., top : top + size, x : x + size] for x in lefts]
    left = (w - size) // 2
    tops = [0, (h - size) // 2, h - size]
    return [clip[..., y : y + size, left : left + size] for y in tops]


def eval_transform(clip: torch.Tensor, size: int = 224, crops: int = 1) -> torch.Tensor:
    """Test-time transform of ``uint8 [T, 3, H, W]`` -> normalised ``[crops, T, 3, S, S]``.

    One crop: resize the short side to ``int(256/224*S)`` and take the centre ``S x S``; three crops:
    resize the short side to ``S`` and take three ``S x S`` crops along the long side.
    """
    norm = Normalize255()
    if crops == 1:
        clip = v2.functional.resize(clip, [resize_short_side(size)], antialias=True)
        clip = v2.functional.center_crop(clip, [size, size])
        return norm(clip)[None]
    if crops == 3:
        clip = v2.functional.resize(clip, [size], antialias=True)
        if min(clip.shape[-2:]) < size:  # rounding made the short side smaller than S
            clip = v2.functional.resize(clip, [size, max(size, clip.shape[-1])], antialias=True)
        return torch.stack([norm(c) for c in _three_crops(clip, size)])
    raise ValueError(f"crops must be 1 or 3, got {crops}")


def decode_short_side(size: int, crops: int = 1) -> int:
    """Short side the decoder may shrink frames to before the transforms (never below what they need)."""
    return size if crops == 3 else resize_short_side(size)
