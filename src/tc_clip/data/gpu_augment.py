"""Colour jitter, grayscale, flip and normalisation of a whole batch, on the device it is on.

Loader workers hand over ``uint8`` clips (a quarter of the bytes of float32) and, for training, the
random draws of :func:`tc_clip.data.transforms.draw_augment` (a few small tensors per clip, made in the
worker from the sample's RNG, so the draws and an exact resume do not depend on where they are applied).
:func:`device_transform` runs after the batch reached the device (the data module's
``on_after_batch_transfer``). The result equals :func:`tc_clip.data.transforms.augment_clip` applied
clip by clip, up to float rounding.
"""

from __future__ import annotations

from typing import Any

import torch

from tc_clip.data.transforms import IDENTITY, MEAN, STD, _gray, adjust_hue, colour_op

__all__ = ["AUGMENT_KEY", "augment_batch", "normalize", "device_transform"]

#: batch key of the training draws (removed by :func:`device_transform`)
AUGMENT_KEY = "augment"


def normalize(video: torch.Tensor) -> torch.Tensor:
    """``uint8 [..., 3, H, W]`` (0-255) -> float32 normalised with the release's mean and std."""
    mean = torch.tensor(MEAN, device=video.device).view(3, 1, 1)
    std = torch.tensor(STD, device=video.device).view(3, 1, 1)
    return (video.float() - mean) / std


def _groups(params: dict[str, torch.Tensor], frames_per_clip: int) -> dict[int, torch.Tensor]:
    """Frame rows ``[B*T]`` grouped by what the jitter does to them: -1 for no jitter, else the
    operation order as a base-4 number (24 possible orders)."""
    order = params["order"].flatten(0, 1).long()
    key = ((order[:, 0] * 4 + order[:, 1]) * 4 + order[:, 2]) * 4 + order[:, 3]
    key = torch.where(params["jitter"].repeat_interleave(frames_per_clip), key, -1)
    return {int(k): (key == k).nonzero().squeeze(1) for k in key.unique().tolist()}


def _augment_frames(video: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The CPU path of :func:`augment_batch`: frame by frame, in place in the output, so that each frame
    stays in the cache through all its operations and nothing is gathered, scattered or selected."""
    b, t = video.shape[:2]
    src = video.flatten(0, 1)
    out = torch.empty(src.shape, dtype=torch.float32)
    factors, orders = params["factors"].flatten(0, 1).tolist(), params["order"].flatten(0, 1).tolist()
    jitter, gray, flip = (params[k].repeat_interleave(t).tolist() for k in ("jitter", "gray", "flip"))
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    for r, x in enumerate(out):
        x.copy_(src[r])
        if jitter[r]:
            for op in orders[r]:
                f = factors[r][op]
                if f != IDENTITY[op]:
                    if op == 3:
                        adjust_hue(x, f, out=x)
                    else:
                        colour_op(x, op, f)
        if gray[r]:
            x.copy_(_gray(x).expand_as(x))
        if flip[r]:
            x.copy_(x.flip(-1))
        x.sub_(mean).div_(std)
    return out.view(b, t, *out.shape[1:])


def augment_batch(
    video: torch.Tensor, params: dict[str, torch.Tensor], chunk: int | None = None
) -> torch.Tensor:
    """Training colour augmentation of ``uint8 [B, T, 3, S, S]`` with the collated draws ``params``
    (``flip``, ``jitter``, ``gray`` ``[B]``; ``factors``, ``order`` ``[B, T, 4]``) -> normalised float32.

    On an accelerator, frames that share an operation order are processed together, all four
    operations, grayscale, flip and normalisation in one go, ``chunk`` frames at a time (default: all).
    The draws are read on the host (one small copy), so the grouping costs no device synchronisation per
    group. On the CPU (``chunk=None``) frames are processed one by one in place (:func:`_augment_frames`),
    which keeps each frame in the cache.
    """
    b, t = video.shape[:2]
    cpu = {k: v.cpu() for k, v in params.items()}
    if chunk is None:
        if video.device.type == "cpu":
            return _augment_frames(video, cpu)
        chunk = b * t
    src = video.flatten(0, 1)
    out = torch.empty(src.shape, dtype=torch.float32, device=src.device)
    factors = cpu["factors"].flatten(0, 1)
    gray, flip = cpu["gray"].repeat_interleave(t), cpu["flip"].repeat_interleave(t)
    mean = torch.tensor(MEAN, device=src.device).view(3, 1, 1)
    std = torch.tensor(STD, device=src.device).view(3, 1, 1)
    for key, rows in _groups(cpu, t).items():
        ops = [] if key < 0 else [(key >> (2 * (3 - i))) & 3 for i in range(4)]
        for part in rows.split(chunk):
            idx = part.to(src.device)
            x = src.index_select(0, idx).float()
            for op in ops:
                f = factors[part, op]
                if bool((f != IDENTITY[op]).any()):
                    x = colour_op(x, op, f.to(src.device))
            if bool(gray[part].any()):
                x = torch.where(gray[part].to(src.device).view(-1, 1, 1, 1), _gray(x).expand_as(x), x)
            if bool(flip[part].any()):
                x = torch.where(flip[part].to(src.device).view(-1, 1, 1, 1), x.flip(-1), x)
            out.index_copy_(0, idx, x.sub_(mean).div_(std))
    return out.view(b, t, *out.shape[1:])


def device_transform(batch: Any) -> Any:
    """The device half of the pipeline for a collated batch dict: a ``uint8`` ``video`` with training
    draws under :data:`AUGMENT_KEY` is augmented and normalised (the key is removed), any other ``uint8``
    ``video`` (evaluation, prediction) is normalised. Float videos and other batches pass unchanged."""
    if not isinstance(batch, dict) or not isinstance(batch.get("video"), torch.Tensor):
        return batch
    video = batch["video"]
    if video.dtype != torch.uint8:
        return batch
    out = dict(batch)
    params = out.pop(AUGMENT_KEY, None)
    out["video"] = augment_batch(video, params) if params is not None else normalize(video)
    return out
