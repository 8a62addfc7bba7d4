"""TSN sampling and clip transforms (no video files)."""

import random

import pytest
import torch

from tc_clip.data.transforms import (
    MEAN,
    MultiScaleCrop,
    Normalize255,
    draw_augment,
    eval_indices,
    eval_transform,
    train_geometry,
    train_indices,
    train_transform,
)


def test_train_indices_one_per_segment():
    rng = random.Random(0)
    for n in (16, 17, 100, 301):
        seg = n // 16
        for _ in range(20):
            idx = train_indices(n, 16, rng)
            assert len(idx) == 16
            assert all(i * seg <= f < (i + 1) * seg for i, f in enumerate(idx))


def test_train_indices_short_video_even_positions():
    assert train_indices(5, 8, random.Random(0)) == [0, 1, 1, 2, 2, 3, 3, 4]
    assert train_indices(1, 4) == [0, 0, 0, 0]
    with pytest.raises(ValueError):
        train_indices(0, 4)


def test_eval_indices_centred_and_views():
    n, t = 300, 16
    seg = n / t
    assert eval_indices(n, t) == [int(i * seg + seg / 2) for i in range(t)]
    v0, v1 = eval_indices(n, t, 0, 2), eval_indices(n, t, 1, 2)
    assert v0 == [int(i * seg + seg / 4) for i in range(t)]
    assert v1 == [int(i * seg + 3 * seg / 4) for i in range(t)]
    assert v0 == eval_indices(n, t, 0, 2)  # deterministic
    assert all(a < b for a, b in zip(v0, v1, strict=False))
    assert eval_indices(5, 8) == [int(i * 5 / 8 + 5 / 16) for i in range(8)]
    for views in (1, 2, 4):
        for v in range(views):
            assert max(eval_indices(7, 16, v, views)) <= 6


def test_multiscale_crop_sizes_and_positions():
    crop = MultiScaleCrop()
    base = 256
    sizes = [int(base * s) for s in (1, 0.875, 0.75, 0.66)]
    torch.manual_seed(0)
    for _ in range(200):
        top, left, h, w = crop.params(256, 340)
        assert h in sizes and w in sizes
        assert abs(sizes.index(h) - sizes.index(w)) <= 1
        dy, dx = (256 - h) // 4, (340 - w) // 4
        assert (top, left) in {(0, 0), (0, 4 * dx), (4 * dy, 0), (4 * dy, 4 * dx), (2 * dy, 2 * dx)}


def test_train_transform_geometry_per_clip_jitter_per_frame():
    """SPEC 5b: crop, flip, grayscale and whether to jitter per clip; jitter factors and order per frame."""
    frame = torch.randint(0, 256, (3, 72, 96), dtype=torch.uint8)
    clip = frame.expand(8, 3, 72, 96).clone()
    tf = train_transform(64)
    jittered = plain = 0
    for seed in range(30):
        torch.manual_seed(seed)
        out = tf(clip)
        torch.manual_seed(seed)
        geometry = train_geometry(64)(clip)
        params = draw_augment(8)
        assert out.shape == (8, 3, 64, 64) and out.dtype == torch.float32
        assert torch.equal(geometry, geometry[:1].expand_as(geometry))  # one crop for every frame
        same = torch.equal(out, out[:1].expand_as(out))
        assert same != bool(params["jitter"]), f"seed {seed}"
        jittered += bool(params["jitter"])
        plain += same
    assert jittered > 15 and plain > 0


def test_train_transform_draws_vary_between_clips():
    clip = torch.randint(0, 256, (4, 3, 72, 96), dtype=torch.uint8)
    tf = train_transform(64)
    outs = []
    for seed in range(5):
        torch.manual_seed(seed)
        outs.append(tf(clip))
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_normalisation_on_0_255():
    x = torch.tensor(MEAN).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert torch.allclose(Normalize255()(x), torch.zeros(2, 3, 4, 4))
    white = Normalize255()(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8))
    assert torch.allclose(
        white.flatten(),
        torch.tensor([(255 - 123.675) / 58.395, (255 - 116.28) / 57.12, (255 - 103.53) / 57.375]),
    )


def test_eval_transform_one_and_three_crops():
    clip = torch.randint(0, 256, (4, 3, 120, 200), dtype=torch.uint8)
    one = eval_transform(clip, 64, 1)
    three = eval_transform(clip, 64, 3)
    assert one.shape == (1, 4, 3, 64, 64)
    assert three.shape == (3, 4, 3, 64, 64)
    assert not torch.equal(three[0], three[2])
    # centre crop of the 3-crop equals the middle of the short-side-64 resize
    tall = eval_transform(clip.transpose(-1, -2), 64, 3)
    assert tall.shape == (3, 4, 3, 64, 64)
    with pytest.raises(ValueError):
        eval_transform(clip, 64, 2)


def test_clip_colour_jitter_matches_torchvision_ops():
    from torchvision.transforms import v2

    from tc_clip.data.transforms import STD, adjust_hue, augment_clip

    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    for shift in (-0.1, 0.03, 0.5):
        ref = v2.functional.adjust_hue(x / 255, shift) * 255
        assert torch.allclose(adjust_hue(x, shift), ref, atol=1e-2)
    params = draw_augment(2, flip=False, jitter=(0.4, 0, 0, 0))
    params.update(jitter=torch.tensor(True), gray=torch.tensor(False))
    assert (params["factors"][:, 1:] == torch.tensor([1.0, 1.0, 0.0])).all()
    out = augment_clip(x.byte(), params) * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    for t in range(2):  # brightness only: one factor per frame, drawn anew for each frame
        keep = (x[t] > 10) & (out[t] < 254.9)
        assert torch.allclose(out[t][keep] / x[t][keep], params["factors"][t, 0], rtol=1e-5)
    assert params["factors"][0, 0] != params["factors"][1, 0]


def test_colour_ops_match_torchvision():
    """Brightness, contrast and saturation of :func:`colour_op` are torchvision's, per frame factor."""
    from torchvision.transforms import v2

    from tc_clip.data.transforms import colour_op

    x = torch.randint(0, 256, (3, 3, 16, 16)).float()
    factors = torch.tensor([0.6, 1.0, 1.4])
    tv = (v2.functional.adjust_brightness, v2.functional.adjust_contrast, v2.functional.adjust_saturation)
    for op, fn in enumerate(tv):
        ref = torch.stack([fn(frame / 255, float(f)) * 255 for frame, f in zip(x, factors, strict=True)])
        assert torch.allclose(colour_op(x.clone(), op, factors), ref, atol=1e-3), op
