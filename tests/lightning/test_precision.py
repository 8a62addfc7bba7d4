"""bf16-mixed and torch.compile on the CPU: the demo config end to end in bf16-mixed (fit, validate, test,
predict), bf16 logits against float32, and the compiled model against the eager one (values, gradients,
recompiles)."""

from __future__ import annotations

import copy
import csv
import functools
import shutil
from pathlib import Path

import pytest
import torch

from run_helpers import demo_args
from tc_clip.cli import main
from tc_clip.lightning import TCCLIPModule
from tc_clip.model import TCCLIP, TCCLIPConfig
from tc_clip.model.factory import TINY_CLIP_CFG

NAMES = ["apply eye makeup", "dog runs", "PlayingGuitar"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo_cache")


def _epoch_losses(run: Path) -> list[float]:
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    return [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]


@pytest.mark.slow
def test_bf16_mixed_demo_end_to_end(cache, tmp_path):
    """fit, validate, test and predict in bf16-mixed on the CPU: the loss falls, nothing raises a dtype error
    (token selection, merging, VP, metrics), and the trained model's bf16 logits follow its float32 ones."""
    root = tmp_path / "runs"
    bf16 = ("--trainer.precision", "bf16-mixed")
    assert main(["fit", *demo_args(cache, root, *bf16)]) == 0
    losses = _epoch_losses(root / "version_0")
    assert len(losses) == 2 and all(map(torch.isfinite, torch.tensor(losses))) and losses[1] < losses[0]
    ckpt = str(root / "version_0/checkpoints/last.ckpt")
    for stage in ("validate", "test"):
        assert main([stage, *demo_args(cache, root, *bf16), "--ckpt_path", ckpt]) == 0
    videos = next(p for p in cache.iterdir() if (p / "labels.csv").is_file()) / "videos"
    assert main(["predict", *demo_args(cache, root, *bf16), "--ckpt_path", ckpt, "--data.predict_list",
                 str(videos)]) == 0
    rows = list(csv.DictReader(open(next(root.rglob("predictions.csv")))))
    assert len(rows) == 3 * (4 + 1) and all(0.0 <= float(r["score_1"]) <= 1.0 for r in rows)

    module = TCCLIPModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    module.model.set_class_names(torch.load(ckpt, map_location="cpu", weights_only=True)["tc_clip_class_names"])
    clips = torch.randn(6, 8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = module(clips)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = module(clips)
    assert half.dtype == torch.float32  # the cosine logits are computed in float32 under autocast
    scale = module.model.logit_scale.exp().item()  # logits are scale x cosine: the tolerance is on the cosine
    torch.testing.assert_close(half, full, atol=0.01 * scale, rtol=0)
    torch.testing.assert_close(half.softmax(-1), full.softmax(-1), atol=0.03, rtol=0)


@pytest.mark.parametrize("aggregation", ["bipartite", "kmeans", "random", "tube", "none"])
def test_bf16_autocast_every_aggregation(aggregation):
    """Under CPU autocast every aggregation runs (with the analysis outputs), gives float32 logits and
    gradients, and stays near the float32 probabilities; seed scores and the matching run in float32."""
    torch.manual_seed(0)
    cfg = TCCLIPConfig(num_frames=4, num_context_tokens=8, merge_step=10, aggregation=aggregation)
    model = TCCLIP.from_clip("tiny", class_names=NAMES, config=cfg)
    video = torch.randn(2, 4, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, vision = model(video, return_aux=True)
        logits.logsumexp(-1).mean().backward()
    assert logits.dtype == torch.float32 and vision.cls_attention[0].dtype == torch.float32
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad():
        reference = model(video)
    # random weights: near-uniform attention, so bf16 may flip a seed or a match; the trained demo model is
    # held to the tighter tolerance in test_bf16_mixed_demo_end_to_end
    torch.testing.assert_close(logits.detach().softmax(-1), reference.softmax(-1), atol=0.15, rtol=0)


def _tiny_cfg() -> dict:
    cfg = copy.deepcopy(TINY_CLIP_CFG)
    cfg["vision_cfg"]["layers"], cfg["text_cfg"]["layers"] = 2, 1  # context tokens from layer 1 on; VP at 0
    return cfg


_CXX = next((c for c in ("g++", "clang++", "c++") if shutil.which(c)), None)


@pytest.mark.slow
@pytest.mark.skipif(_CXX is None, reason="inductor compiles C++ on the CPU: no C++ compiler here")
def test_inductor_compiled_module_matches_eager(monkeypatch, tmp_path):
    """``compile=True`` with torch.compile's default backend, inductor, as a user gets it on a CPU: the
    same logits and gradients as the eager model (float32; inductor fuses and reorders reductions, so
    within 1e-4). A fresh kernel cache, so every kernel is compiled here."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    config = TCCLIPConfig(num_frames=2, num_context_tokens=4, merge_step=8)
    torch.manual_seed(0)
    eager = TCCLIPModule(model_name=_tiny_cfg(), config=config, class_names=NAMES)
    compiled = TCCLIPModule(model_name=_tiny_cfg(), config=config, class_names=NAMES, compile=True)
    compiled.load_state_dict(eager.state_dict())
    video = torch.randn(2, 2, 3, 64, 64)
    for module in (eager, compiled):
        module(video).logsumexp(-1).mean().backward()
    torch.testing.assert_close(compiled(video), eager(video), rtol=1e-4, atol=1e-4)
    grads = 0
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        if p.grad is not None:
            grads += 1
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-5, msg=name)
    assert grads > 10
    torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_module_matches_eager_and_does_not_recompile_per_batch(monkeypatch):
    """``compile=True``: the same logits and gradients as the eager model, the eager model's state dict, one
    graph for every training batch of a shape (no graph break), and one recompile per new class count (module
    buffers have static shapes in torch.compile), none when a vocabulary comes back. The backend is
    ``aot_eager`` here (the graphs inductor gets, without minutes of C++ compilation on a small CPU);
    :func:`test_inductor_compiled_module_matches_eager` runs inductor."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    config = TCCLIPConfig(num_frames=2, num_context_tokens=4, merge_step=8)
    torch.manual_seed(0)
    eager = TCCLIPModule(model_name=_tiny_cfg(), config=config, class_names=NAMES)
    compiled = TCCLIPModule(model_name=_tiny_cfg(), config=config, class_names=NAMES, compile=True)
    compiled.load_state_dict(eager.state_dict())
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    video = torch.randn(2, 2, 3, 64, 64)
    for module in (eager, compiled):
        module(video).logsumexp(-1).mean().backward()
    torch.testing.assert_close(compiled(video), eager(video), rtol=1e-5, atol=1e-5)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == 1 and not counters["graph_break"]  # the whole training forward is one graph
    for seed in range(2):
        compiled(torch.randn(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))).sum().backward()
    assert counters["stats"]["unique_graphs"] == graphs  # no recompile per batch
    for names in (NAMES + ["walks"], NAMES):
        compiled.model.set_class_names(names)
        assert compiled(video).shape == (2, len(names))
    assert counters["stats"]["unique_graphs"] == graphs + 1  # a new class count: one graph, kept for a return
