"""WiSE-FT weight arithmetic (SPEC §6, :mod:`tc_clip.model.wise`): exact interpolation per parameter, the
endpoints, restoring, and the forms CLIP's weights come in. Tiny random CLIP."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tc_clip.model import TCCLIP, TCCLIPConfig, wise
from wise_helpers import TINY, fine_tune, save_tiny_clip


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.pt")


def finetuned_model(clip_file: Path, seed: int = 1, **config) -> TCCLIP:
    """A TCCLIP built from the CLIP file whose every trainable weight then moved ("fine-tuned")."""
    model = TCCLIP.from_clip("tiny", pretrained=str(clip_file), class_names=["RunFast", "jump_high", "Swim"],
                             config=TCCLIPConfig(**{**TINY, **config}))
    return fine_tune(model, seed)


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("pos", ["space", "joint"])
def test_interpolation_exact_per_parameter(clip_file, pos):
    model = finetuned_model(clip_file, positional_embedding=pos)
    clip = wise.load_clip_state(clip_file, model=model)
    ft = state(model)
    alpha = 0.3
    original = wise.interpolate(model, clip, alpha)
    now = state(model)
    shared = set(wise.shared_keys(model))
    assert shared == set(clip) and {"visual.local_global_bias.1", "prompt_ctx"}.isdisjoint(shared)
    for key, value in now.items():
        if key in shared:
            expected = ((1 - alpha) * clip[key] + alpha * ft[key]).expand_as(ft[key])
            assert torch.equal(value, expected), key
            assert torch.equal(original[key], ft[key]), key
        else:  # local-global bias, prompt vectors, VP block: the fine-tuned values, untouched
            assert torch.equal(value, ft[key]), key
            assert key not in original
    if pos == "joint":
        assert now["visual.positional_embedding"].shape == (TINY["num_frames"], 65, 64)
    wise.restore(model, original)
    assert all(torch.equal(v, ft[k]) for k, v in state(model).items())
    # inplace=False: the ensembled values are returned, the model is not touched
    mixed = wise.interpolate(model, clip, alpha, inplace=False)
    assert all(torch.equal(mixed[k], now[k]) for k in mixed) and all(
        torch.equal(v, ft[k]) for k, v in state(model).items()
    )


def test_alpha_endpoints_and_text_cache(clip_file):
    model = finetuned_model(clip_file).eval()
    clip = wise.load_clip_state(clip_file, model=model)
    video = torch.randn(2, TINY["num_frames"], 3, 64, 64, generator=torch.Generator().manual_seed(3))
    ft = state(model)
    with torch.no_grad():
        ref = model(video)  # fills the text cache with the fine-tuned weights
        with wise.ensembled(model, clip, 1.0):
            assert torch.equal(model(video), ref)
        with wise.ensembled(model, clip, 0.0):
            now = state(model)
            for key in wise.shared_keys(model):  # CLIP's weights for every shared parameter
                assert torch.equal(now[key], clip[key].expand_as(now[key])), key
            for key in ("prompt_ctx", "visual.local_global_bias.1", "vp_blocks.0.ln_1_kv.weight"):
                assert torch.equal(now[key], ft[key])
            assert not torch.allclose(model(video), ref)  # the cached text states were rebuilt
        assert torch.equal(model(video), ref)  # and again after restoring
    # a copy and the file written on purpose
    copy = wise.ensembled_copy(model, clip, 0.0)
    assert torch.equal(copy.visual.proj, clip["visual.proj"]) and torch.equal(
        model.visual.proj, ft["visual.proj"]
    )


def test_load_clip_state_forms(clip_file, tmp_path):
    model = finetuned_model(clip_file)
    plain = torch.load(clip_file, weights_only=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in plain.items()}}, tmp_path / "oc.pt")
    from_oc = wise.load_clip_state(tmp_path / "oc.pt", model=model)
    assert set(from_oc) == set(plain) and all(torch.equal(from_oc[k], plain[k]) for k in plain)
    wise.save_ensembled(model, plain, 0.5, tmp_path / "wise.pt")
    loaded = TCCLIP.load(tmp_path / "wise.pt")
    expected = wise.ensembled_state_dict(model, plain, 0.5)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())
    with pytest.raises(ValueError, match="no CLIP weights"):
        wise.load_clip_state(None)
    with pytest.raises(ValueError, match="model name"):
        wise.load_clip_state("openai", model_name="tiny")
