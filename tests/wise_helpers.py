"""Shared helpers of the WiSE-FT tests: a tiny random CLIP file ("the CLIP the model was fine-tuned from"),
weights moved away from it ("fine-tuned"), and a check that a plot was drawn."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tc_clip.model import create_clip

TINY = dict(num_frames=4, num_context_tokens=16, merge_step=20)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def save_tiny_clip(path: Path) -> Path:
    """A random tiny CLIP saved as a plain state dict."""
    torch.manual_seed(0)
    clip, _ = create_clip("tiny")
    torch.save(clip.state_dict(), path)
    return path


def fine_tune(module: nn.Module, seed: int = 1) -> nn.Module:
    """Move every weight of ``module`` a little, reproducibly (in place); returns it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return module


def check_png(path: Path) -> None:
    """A PNG large enough to hold axes, points and labels, and not a blank canvas."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 10_000
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    assert image.shape[0] > 300 and image.shape[1] > 400
    assert float(image[..., :3].std()) > 0.05
