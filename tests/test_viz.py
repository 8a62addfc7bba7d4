"""tc_clip.viz figures (panel counts for a given T, input forms, errors) and tc_clip.inference helpers
(loading every kind of model file, reading a synthetic video, top-k) on the tiny model."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import open_clip
import pytest
import torch
from matplotlib.figure import Figure

from tc_clip import TCCLIP, inference, viz
from tc_clip.data.transforms import Normalize255
from tc_clip.model import TINY_CLIP_CFG

NAMES = ["move blue triangle left", "move red square right", "juggling", "MoveGreenCircleDown"]


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    path, name = inference.synthetic_video(tmp_path_factory.mktemp("video") / "clip.mp4", class_index=2)
    assert name == "MoveBlueTriangleLeft"
    return path


@pytest.fixture(scope="module")
def tiny():
    return inference.tiny_model(NAMES)


@pytest.fixture(scope="module", params=[4, 8])
def run(request, video_file, tiny):
    """Frames and model internals for T frames, for TC-CLIP and its frame-averaging baseline."""
    t = request.param
    video, frames = inference.read_clip(video_file, num_frames=t, size=64)
    _, aux = inference.explain(tiny, video)
    _, aux_base = inference.explain(inference.frame_averaging_baseline(tiny), video)
    return t, video, frames, aux, aux_base


def _check(fig, kind: str, t: int) -> None:
    assert isinstance(fig, Figure)
    assert len(fig.axes) == viz.panel_count(kind, t)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=30)  # renders without pyplot or a GUI backend
    assert buf.getvalue()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------------- figures
def test_topk_panels(run, tiny):
    t, video, frames, _, _ = run
    preds = inference.predict(tiny, video, NAMES, top_k=3)
    _check(viz.plot_topk(frames, preds), "topk", t)


def test_seed_token_panels(run, tiny):
    t, _, frames, aux, _ = run
    grid = tiny.visual.grid_size
    for layer in (0, -1):
        _check(viz.plot_seed_tokens(frames, aux.seed_indices, grid, layer=layer), "seed_tokens", t)
    # one layer's tensor, with or without the batch dimension
    _check(viz.plot_seed_tokens(frames, aux.seed_indices[1], grid), "seed_tokens", t)
    _check(viz.plot_seed_tokens(frames, aux.seed_indices[1][0].numpy(), grid), "seed_tokens", t)


def test_context_token_panels(run, tiny):
    t, _, frames, aux, _ = run
    grid = tiny.visual.grid_size
    for token in (None, 0, -1, "largest"):
        fig = viz.plot_context_token_sources(frames, aux.context_sources, grid, token=token)
        _check(fig, "context_token_sources", t)


def test_cls_attention_panels(run, tiny):
    t, _, frames, aux, aux_base = run
    fig = viz.plot_cls_attention(frames, aux.cls_attention, aux_base.cls_attention, tiny.visual.grid_size)
    _check(fig, "cls_attention", t)
    fig = viz.plot_cls_attention(frames, aux.cls_attention[0], aux_base.cls_attention[0], 8, normalize=False)
    _check(fig, "cls_attention", t)


@pytest.mark.parametrize("t", [1, 4, 8, 16])
def test_panel_counts_without_a_model(t):
    """Arrays of the documented shapes, any T (more than 8 frames wrap onto several rows)."""
    rng = np.random.default_rng(0)
    g, k, m = 4, 5, 3
    frames = rng.integers(0, 256, (t, 32, 32, 3), dtype=np.uint8)
    seeds = np.stack([rng.permutation(g * g)[:m] for _ in range(t)])[None]  # [1, T, m]
    sources = np.zeros((1, k, t, g * g), np.float32)
    for i in range(t):
        for j, p in enumerate(seeds[0, i]):
            sources[0, (i + j) % k, i, p] = 1.0
    attn = rng.random((1, t, g * g))
    assert len(viz.plot_topk(frames, [("a", 0.6), ("b", 0.4)]).axes) == t + 1
    assert len(viz.plot_seed_tokens(frames, seeds, g).axes) == t
    assert len(viz.plot_context_token_sources(frames, sources, (g, g)).axes) == t
    assert len(viz.plot_context_token_sources(frames, sources, g, token=1).axes) == t
    assert len(viz.plot_cls_attention(frames, attn, attn, g).axes) == 2 * t
    # [T, 3, H, W] float frames in 0..1 are accepted too
    chw = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    assert len(viz.plot_seed_tokens(chw, seeds, g).axes) == t


def test_panel_count_table():
    kinds = ("topk", "seed_tokens", "context_token_sources", "cls_attention")
    assert [viz.panel_count(k, 6) for k in kinds] == [7, 6, 6, 12]
    with pytest.raises(ValueError, match="unknown figure"):
        viz.panel_count("nope", 4)


def test_figure_input_errors(run, tiny):
    t, _, frames, aux, aux_base = run
    grid = tiny.visual.grid_size
    with pytest.raises(ValueError, match="frames"):
        viz.plot_seed_tokens(frames[:-1], aux.seed_indices, grid)
    with pytest.raises(ValueError, match="patches per frame"):
        viz.plot_context_token_sources(frames, aux.context_sources, (4, 4))
    with pytest.raises(ValueError, match="out of range"):
        viz.plot_seed_tokens(frames, aux.seed_indices, (2, 2))
    with pytest.raises(IndexError, match="layer 7"):
        viz.plot_seed_tokens(frames, aux.seed_indices, grid, layer=7)
    with pytest.raises(ValueError, match="no seed_indices"):  # the baseline has no TC internals
        viz.plot_seed_tokens(frames, aux_base.seed_indices, grid)
    with pytest.raises(IndexError, match="context tokens"):
        viz.plot_context_token_sources(frames, aux.context_sources, grid, token=99)


def test_context_token_of(run):
    t, _, _, aux, _ = run
    src = aux.context_sources[-1][0]  # [k, T, P]
    seed = int(aux.seed_indices[-1][0, 0, 0])
    token = viz.context_token_of(aux.context_sources, frame=0, patch=seed)
    assert token is not None and src[token, 0, seed] > 0
    unused = sorted(set(range(src.shape[-1])) - set(aux.seed_indices[-1][0, 0].tolist()))
    assert viz.context_token_of(aux.context_sources, frame=0, patch=unused[0]) is None


def test_matplotlib_backend_untouched():
    """Building figures does not import pyplot (no backend switch in scripts or servers)."""
    backend = matplotlib.get_backend()
    viz.plot_topk(np.zeros((2, 8, 8, 3), np.uint8), [("a", 1.0)])
    assert matplotlib.get_backend() == backend


# -------------------------------------------------------------------------------------- inference
def test_read_clip(video_file):
    video, frames = inference.read_clip(video_file, num_frames=8, size=64)
    assert video.shape == (1, 8, 3, 64, 64) and video.dtype == torch.float32
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    # the display frames are exactly the model's crop before normalisation
    expected = Normalize255()(torch.from_numpy(frames).permute(0, 3, 1, 2))
    torch.testing.assert_close(video[0], expected)
    # two temporal views sample different frames of the 32-frame video
    other, _ = inference.read_clip(video_file, num_frames=8, size=64, view=1, views=2)
    assert not torch.equal(other, video)
    # the same crop, decoded at a larger display size
    _, big = inference.read_clip(video_file, num_frames=4, size=64, display_size=96)
    assert big.shape == (4, 96, 96, 3) and big.dtype == np.uint8
    with pytest.raises(FileNotFoundError):
        inference.read_clip(video_file.parent / "missing.mp4")


def test_predict(video_file, tiny):
    video, _ = inference.read_clip(video_file, num_frames=8, size=64)
    preds = inference.predict(tiny, video, NAMES, top_k=3)
    assert len(preds) == 3 and {n for n, _ in preds} <= set(NAMES)
    probs = [p for _, p in preds]
    assert probs == sorted(probs, reverse=True)
    full = inference.predict(tiny, video[0], top_k=100)  # [T, 3, S, S] and the current vocabulary
    assert len(full) == len(NAMES) and sum(p for _, p in full) == pytest.approx(1.0, abs=1e-5)
    assert dict(full)[preds[0][0]] == pytest.approx(preds[0][1], abs=1e-6)
    # a different vocabulary, free-form text
    assert sorted(n for n, _ in inference.predict(tiny, video, ["a", "b c"], top_k=5)) == ["a", "b c"]
    # several views: softmax averaged
    other, _ = inference.read_clip(video_file, num_frames=8, size=64, view=1, views=2)
    both = dict(inference.predict(tiny, torch.cat([video, other]), NAMES, top_k=4))
    one = dict(inference.predict(tiny, video, NAMES, top_k=4))
    two = dict(inference.predict(tiny, other, NAMES, top_k=4))
    for name in NAMES:
        assert both[name] == pytest.approx((one[name] + two[name]) / 2, abs=1e-5)
    assert not tiny.training


def _same(a: list[tuple[str, float]], b: list[tuple[str, float]], tol: float = 1e-6) -> bool:
    names_equal = [n for n, _ in a] == [n for n, _ in b]
    return names_equal and [p for _, p in a] == pytest.approx([p for _, p in b], abs=tol)


def test_load_model_files(tmp_path, video_file, tiny):
    video, _ = inference.read_clip(video_file, num_frames=8, size=64)
    reference = inference.predict(tiny, video, NAMES, top_k=4)

    # (c) a fresh tiny model: seeded, so reproducible
    fresh = inference.load_model(None, class_names=NAMES)
    assert _same(inference.predict(fresh, video, top_k=4), reference)

    # (b) TCCLIP.save files
    tiny.save(tmp_path / "model.pth")
    ours = inference.load_model(tmp_path / "model.pth")
    assert ours.class_names == NAMES and not ours.training
    assert _same(inference.predict(ours, video, top_k=4), reference)

    # (b) a Lightning checkpoint of the demo's module (hyper-parameters + state dict + vocabulary)
    from tc_clip.lightning import TCCLIPModule

    module = TCCLIPModule(model_name="tiny", config=tiny.config)
    module.model.load_state_dict(tiny.state_dict())
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": "2.4.0",
        "tc_clip_class_names": NAMES,
    }
    torch.save(ckpt, tmp_path / "demo.ckpt")
    lightning_model = inference.load_model(tmp_path / "demo.ckpt")
    assert isinstance(lightning_model, TCCLIP) and lightning_model.class_names == NAMES
    assert _same(inference.predict(lightning_model, video, top_k=4), reference)

    # (a) a release checkpoint + CLIP weights
    from release_helpers import to_release_layout

    clip_file = tmp_path / "tiny_clip.pt"
    clip = open_clip.CLIP(**TINY_CLIP_CFG)
    clip.token_embedding.weight.data.copy_(tiny.token_embedding.weight.data)
    torch.save(clip.state_dict(), clip_file)
    torch.save({"model": to_release_layout(tiny), "epoch": 1}, tmp_path / "release.pth")
    with pytest.raises(ValueError, match="clip_weights"):
        inference.load_model(tmp_path / "release.pth")
    release = inference.load_model(tmp_path / "release.pth", clip_weights=clip_file, class_names=NAMES,
                                   model_name="tiny", num_context_tokens=16, merge_step=40)
    assert _same(inference.predict(release, video, top_k=4), reference, tol=1e-5)

    with pytest.raises(FileNotFoundError):
        inference.load_model(tmp_path / "nope.ckpt")


def test_demo_checkpoint_discovery(tmp_path, monkeypatch, tiny):
    monkeypatch.delenv(inference.DEMO_CHECKPOINT_ENV, raising=False)
    assert inference.find_demo_checkpoint([tmp_path]) is None
    folder = tmp_path / "runs" / "demo" / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(b"")
    assert inference.find_demo_checkpoint([tmp_path]) == folder / "last.ckpt"
    (folder / "best-epoch=003.ckpt").write_bytes(b"")
    assert inference.find_demo_checkpoint([tmp_path]) == folder / "best-epoch=003.ckpt"

    # a discovered file that cannot be read: the explicit fallback, with a warning
    with pytest.warns(UserWarning, match="could not load the demo checkpoint"):
        loaded = inference.load_demo_model(search=[tmp_path])
    assert loaded.is_fallback and "RANDOM" in loaded.description

    monkeypatch.setenv(inference.DEMO_CHECKPOINT_ENV, "none")
    loaded = inference.load_demo_model(NAMES)
    assert loaded.is_fallback and loaded.model.class_names == NAMES

    tiny.save(tmp_path / "model.pth")
    monkeypatch.setenv(inference.DEMO_CHECKPOINT_ENV, str(tmp_path / "model.pth"))
    loaded = inference.load_demo_model()
    assert not loaded.is_fallback and loaded.checkpoint == tmp_path / "model.pth"
    monkeypatch.setenv(inference.DEMO_CHECKPOINT_ENV, str(tmp_path / "missing.ckpt"))
    with pytest.raises(FileNotFoundError, match="TC_CLIP_DEMO_CHECKPOINT"):
        inference.find_demo_checkpoint()


def test_frame_averaging_baseline(video_file, tiny):
    base = inference.frame_averaging_baseline(tiny)
    assert not base.config.use_tc and not base.config.use_vp and base.prompt_ctx is None
    torch.testing.assert_close(base.visual.conv1.weight, tiny.visual.conv1.weight)
    torch.testing.assert_close(base.transformer.resblocks[0].mlp.c_fc.weight,
                               tiny.transformer.resblocks[0].mlp.c_fc.weight)
    video, _ = inference.read_clip(video_file, num_frames=4, size=64)
    probs, aux = inference.explain(base, video)
    assert probs.shape == (len(NAMES),)
    assert len(aux.cls_attention) == base.visual.num_layers and aux.cls_attention[0].shape == (1, 4, 64)
    assert not aux.context_sources
