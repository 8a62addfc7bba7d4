"""Pure pieces of the training recipe: schedule, mixing, the video score, the DDP-safe metric."""

from __future__ import annotations

import math

import pytest
import torch

from tc_clip.lightning.metrics import EvalSetAccuracy, aggregate_views, first_occurrence, video_scores
from tc_clip.lightning.mixing import VideoMixup, cutmix_box, smooth_one_hot, soft_target_cross_entropy
from tc_clip.lightning.schedule import (
    WarmupCosineFactor,
    release_cosine_lr,
    warmup_cosine_lr,
    warmup_cosine_scheduler,
)

# ------------------------------------------------------------------------------------------- schedule


def test_release_schedule_values():
    """SPEC 5b: warm-up, then one cosine over the whole run (the rate drops at the end of the warm-up)."""
    base, low, warm, total = 1e-3, 1e-5, 10, 110
    assert release_cosine_lr(0, base, low, warm, total) == 0.0
    assert release_cosine_lr(5, base, low, warm, total) == pytest.approx(5e-4)
    assert release_cosine_lr(9, base, low, warm, total) == pytest.approx(9e-4)
    cos = low + 0.5 * (base - low) * (1 + math.cos(math.pi * 10 / 110))
    assert release_cosine_lr(10, base, low, warm, total) == pytest.approx(cos)
    assert release_cosine_lr(55, base, low, warm, total) == pytest.approx((base + low) / 2)
    assert release_cosine_lr(110, base, low, warm, total) == pytest.approx(low)
    assert release_cosine_lr(500, base, low, warm, total) == pytest.approx(low)
    # zero-shot shape (W = S/2): 8e-6 at the last warm-up step's target, ~4e-6 right after it
    assert release_cosine_lr(50, 8e-6, 8e-8, 50, 100) == pytest.approx(4.04e-6)
    # the mean rate of the zero-shot run (SPEC 5b: 2.76e-6), with 939 steps per epoch (K-400, batch 256)
    steps = 939 * 10
    mean = sum(release_cosine_lr(t, 8e-6, 8e-8, 939 * 5, steps) for t in range(steps)) / steps
    assert mean == pytest.approx(2.76e-6, abs=0.005e-6)


def test_warmup_then_cosine_values():
    base, low, warm, total = 1e-3, 1e-5, 10, 110
    assert warmup_cosine_lr(0, base, low, warm, total) == 0.0
    assert warmup_cosine_lr(5, base, low, warm, total) == pytest.approx(5e-4)
    assert warmup_cosine_lr(10, base, low, warm, total) == pytest.approx(base)
    assert warmup_cosine_lr(60, base, low, warm, total) == pytest.approx((base + low) / 2)
    assert warmup_cosine_lr(110, base, low, warm, total) == pytest.approx(low)
    assert warmup_cosine_lr(500, base, low, warm, total) == pytest.approx(low)
    # no warm-up: starts at the peak
    assert warmup_cosine_lr(0, base, low, 0, total) == pytest.approx(base)
    assert WarmupCosineFactor(1e-3, 1e-5, 10, 110, "warmup_then_cosine")(10) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown lr_schedule 'cosine'"):
        WarmupCosineFactor(1e-3, 1e-5, 10, 110, "cosine")


def test_scheduler_per_group_floor_is_absolute():
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p1], "lr": 1e-2}, {"params": [p2], "lr": 1e-3}])
    sched = warmup_cosine_scheduler(opt, lr_min=1e-5, warmup_steps=2, total_steps=6, shape="warmup_then_cosine")
    seen = []
    for _ in range(7):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen[0] == [0.0, 0.0]
    assert seen[1] == [pytest.approx(5e-3), pytest.approx(5e-4)]
    assert seen[2] == [pytest.approx(1e-2), pytest.approx(1e-3)]
    assert seen[6] == [pytest.approx(1e-5), pytest.approx(1e-5)]
    # state dict round trip keeps the factors (picklable objects)
    state = sched.state_dict()
    assert isinstance(state["lr_lambdas"][0], dict)
    assert WarmupCosineFactor(1e-2, 1e-5, 2, 6)(1) == pytest.approx(0.5)
    restored = warmup_cosine_scheduler(opt, lr_min=1e-5, warmup_steps=2, total_steps=6)
    restored.load_state_dict(state)
    assert restored.lr_lambdas[0].shape == "warmup_then_cosine"


# --------------------------------------------------------------------------------------------- mixing


def test_label_smoothing_and_soft_ce():
    t = smooth_one_hot(torch.tensor([1, 0]), 4, 0.1)
    assert torch.allclose(t[0], torch.tensor([0.025, 0.925, 0.025, 0.025]))
    assert torch.allclose(t.sum(1), torch.ones(2))
    logits = torch.randn(2, 4)
    hard = torch.nn.functional.one_hot(torch.tensor([1, 0]), 4).float()
    ref = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 0]))
    assert soft_target_cross_entropy(logits, hard) == pytest.approx(float(ref), rel=1e-5)
    ref_ls = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 0]), label_smoothing=0.1)
    assert soft_target_cross_entropy(logits, t) == pytest.approx(float(ref_ls), rel=1e-5)


def test_cutmix_one_box_for_all_frames():
    torch.manual_seed(0)
    b, t, h, w = 4, 3, 16, 16
    video = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1, 1).expand(b, t, 3, h, w).clone()
    mix = VideoMixup(num_classes=5, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    out, target = mix(video, torch.tensor([0, 1, 2, 3]))
    assert torch.equal(video[:, 0, 0, 0, 0], torch.arange(4.0))  # input untouched
    torch.manual_seed(0)
    _, _, partner = mix.mix(video, torch.tensor([0, 1, 2, 3]))  # the same draws again
    j = int(partner[0])
    pasted = out[0] == float(j)  # clip 0 receives pixels of its partner
    assert pasted.any() or target[0, 0] == 1.0
    for f in range(1, t):  # the same box on every frame and channel
        assert torch.equal(pasted[f], pasted[0])
    area = pasted[0, 0].float().mean() if j != 0 else torch.tensor(0.0)
    if j != 0:
        assert target[0, j] == pytest.approx(float(area))
        assert target[0, 0] == pytest.approx(1 - float(area))
    assert torch.allclose(target.sum(1), torch.ones(4))


def test_mix_partner_is_a_random_permutation():
    """SPEC 5b: the partner of each clip comes from a random permutation of the batch, not the mirror."""
    b = 8
    video = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1, 1).expand(b, 2, 3, 4, 4).clone()
    labels = torch.arange(b)
    mix = VideoMixup(num_classes=b, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)
    partners = set()
    for seed in range(5):
        torch.manual_seed(seed)
        out, target, partner = mix.mix(video, labels)
        assert sorted(partner.tolist()) == list(range(b))
        partners.add(tuple(partner.tolist()))
        for i in range(b):
            j = int(partner[i])
            if j == i:
                continue
            lam = float(target[i, i])
            expect = lam * i + (1 - lam) * j
            assert torch.allclose(out[i], torch.full_like(out[i], expect), atol=1e-5)
            assert target[i, j] == pytest.approx(1 - lam, abs=1e-6)
    assert tuple(range(b - 1, -1, -1)) not in partners and len(partners) == 5


def test_mixup_weights_and_switch():
    torch.manual_seed(1)
    video = torch.zeros(2, 2, 3, 4, 4)
    video[1] = 1.0
    mix = VideoMixup(num_classes=3, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)
    out, target, partner = mix.mix(video, torch.tensor([0, 2]))
    while partner.tolist() != [1, 0]:  # a draw where the two clips are each other's partner
        out, target, partner = mix.mix(video, torch.tensor([0, 2]))
    lam = 1 - float(out[0].mean())
    assert torch.allclose(out[0], torch.full_like(out[0], 1 - lam))
    assert target[0, 0] == pytest.approx(lam, abs=1e-6) and target[0, 2] == pytest.approx(1 - lam, abs=1e-6)
    off = VideoMixup(num_classes=3, mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.1)
    same, t = off(video, torch.tensor([0, 2]))
    assert same is video and t[0, 0] == pytest.approx(0.9 + 0.1 / 3)
    y0, y1, x0, x1 = cutmix_box(10, 20, 0.75)
    assert 0 <= y0 <= y1 <= 10 and 0 <= x0 <= x1 <= 20


# --------------------------------------------------------------------------------- views and metrics


def test_aggregate_views_softmax_then_sum():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])  # one video, two views
    scores = aggregate_views(logits)
    assert torch.allclose(scores, torch.tensor([[1.25, 0.75]]))
    # a confident wrong view does not outvote two mildly right ones (unlike summing logits)
    logits = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 10.0]]])
    assert aggregate_views(logits).argmax().item() == 1
    assert logits.sum(1).argmax().item() == 1
    logits = torch.tensor([[[2.0, 0.0], [2.0, 0.0], [0.0, 3.0]]])
    assert aggregate_views(logits).argmax().item() == 0
    assert logits.sum(1).argmax().item() == 0
    with pytest.raises(ValueError):
        aggregate_views(torch.zeros(2, 3))


def test_video_scores_sum_the_softmax_of_every_view_in_chunks_or_not():
    weight = torch.randn(2 * 3 * 2 * 2, 5, generator=torch.Generator().manual_seed(0))
    calls = []

    def forward(clips):  # [N, T, 3, H, W] -> [N, 5] logits
        calls.append(len(clips))
        return clips.flatten(1) @ weight

    video = torch.randn(4, 3, 2, 3, 2, 2, generator=torch.Generator().manual_seed(1))  # B=4 videos, V=3 views
    whole = video_scores(forward, video)
    assert calls == [12]
    expected = aggregate_views((video.flatten(0, 1).flatten(1) @ weight).view(4, 3, 5))
    assert torch.allclose(whole, expected) and torch.allclose(whole.sum(-1), torch.full((4,), 3.0))
    calls.clear()
    assert torch.allclose(video_scores(forward, video, views_per_forward=5), whole)
    assert calls == [5, 5, 2]
    one_view = video_scores(forward, video[:, 0])  # [B, T, 3, H, W]: one view
    assert torch.allclose(one_view, video_scores(forward, video[:, :1]))


def test_eval_set_accuracy_dedupes_and_counts():
    m = EvalSetAccuracy(num_classes=6)
    scores = torch.eye(6)[[0, 1, 2, 3]] + 0.01 * torch.arange(6.0)  # top-1 = 0,1,2,3
    m.update(scores, torch.tensor([0, 1, 5, 4]), torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 0]))
    # a padded duplicate of video 0 (as DistributedSampler adds) and an unlabelled video
    m.update(scores[:2], torch.tensor([0, -1]), torch.tensor([0, 4]))
    out = m.compute()
    assert int(out["count"]) == 5 and int(out["labelled"]) == 4 and int(out["skipped"]) == 1
    assert float(out["top1"]) == pytest.approx(0.5)
    # top-5 of 6 classes: video 2 (label 5, ranked 1st by the small ramp) and video 3 (label 4) are hits
    assert float(out["top5"]) == pytest.approx(1.0)
    small = EvalSetAccuracy(num_classes=3)  # top-5 with 3 classes: every labelled video is a hit
    small.update(torch.rand(2, 3), torch.tensor([0, 2]), torch.tensor([0, 1]))
    assert float(small.compute()["top5"]) == 1.0
    assert torch.equal(first_occurrence(torch.tensor([5, 3, 5, 3, 7])), torch.tensor([1, 0, 4]))
