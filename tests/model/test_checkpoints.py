"""CLIP weights and release checkpoints: formats, exact round trips, safe unpickling, clear errors."""

from __future__ import annotations

import functools
import io
import time
import warnings

import open_clip
import pytest
import torch

from release_helpers import NAMES, REAL_OMEGACONF_PICKLE, save_release, to_release_layout
from tc_clip import TCCLIP, TCCLIPConfig
from tc_clip.model import TINY_CLIP_CFG, CheckpointError, CLIPWeightsError, create_clip, load_clip_state_dict
from tc_clip.model.checkpoint import release_settings
from tc_clip.model.serialization import RestrictedUnpickler, to_plain


@pytest.fixture(scope="module")
def vit_b16_file(tmp_path_factory):
    """A random ViT-B/16 (OpenAI layout) saved to disk, fp16-rounded like the release's base weights."""
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-16-quickgelu")
    path = tmp_path_factory.mktemp("clip") / "ViT-B-16.pt"
    torch.save({k: v.half() for k, v in clip.state_dict().items()}, path)
    return path


def test_release_checkpoint_round_trip_vit_b16(vit_b16_file, tmp_path):
    model = TCCLIP.from_clip("ViT-B-16", str(vit_b16_file), NAMES, quick_gelu=True, num_frames=2).eval()
    with torch.no_grad():
        for p in model.visual.local_global_bias.values():
            p.normal_(std=0.3)
        model.prompt_ctx.add_(torch.randn_like(model.prompt_ctx) * 0.1)
    path = save_release(tmp_path / "zero_shot_k400_tc_clip.pth", to_release_layout(model),
                        {"trainer_name": "TCCLIP", "num_frames": 2, "context_token_k": 96})

    loaded = TCCLIP.from_release_checkpoint(path, clip_weights=str(vit_b16_file), class_names=NAMES)
    assert loaded.config.num_frames == 2
    video = torch.randn(1, 2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(video), model(video))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_release_checkpoint_errors(tmp_path, vit_b16_file):
    tiny = TCCLIP.from_clip("tiny", class_names=NAMES, num_frames=2)
    clip_file = tmp_path / "tiny.pt"
    torch.save(open_clip.CLIP(**TINY_CLIP_CFG).state_dict(), clip_file)
    layout = to_release_layout(tiny)
    layout["module.image_encoder.mystery"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"model": layout}, path)
    with pytest.raises(ValueError, match="image_encoder.mystery"):
        TCCLIP.from_release_checkpoint(path, str(clip_file), NAMES, model_name="tiny")

    # a tiny release file loaded as ViT-B/16: one error listing the wrong shapes
    del layout["module.image_encoder.mystery"]
    torch.save({"model": layout}, path)
    with pytest.raises(ValueError, match=r"wrong shapes: .*visual.conv1.weight: expected \(768, 3, 16, 16\)"):
        TCCLIP.from_release_checkpoint(path, str(vit_b16_file), NAMES, num_frames=2)
    with pytest.raises(FileNotFoundError, match="release checkpoint not found"):
        TCCLIP.from_release_checkpoint(tmp_path / "nope.pth", str(clip_file), NAMES)
    torch.save({"weights": 1}, path)
    with pytest.raises(ValueError, match="not a TC-CLIP release checkpoint"):
        TCCLIP.from_release_checkpoint(path, str(clip_file), NAMES)


def test_release_switches_are_read_from_shapes(tmp_path):
    tiny = TCCLIP.from_clip("tiny", class_names=NAMES, num_frames=3, positional_embedding="joint", n_ctx=6)
    clip_file = tmp_path / "tiny.pt"
    torch.save(open_clip.CLIP(**TINY_CLIP_CFG).state_dict(), clip_file)
    path = tmp_path / "joint.pth"
    torch.save({"model": to_release_layout(tiny)}, path)
    loaded = TCCLIP.from_release_checkpoint(path, str(clip_file), NAMES, model_name="tiny")
    assert loaded.config.positional_embedding == "joint" and loaded.config.num_frames == 3
    assert loaded.config.n_ctx == 6


def test_clip_weight_formats(tmp_path):
    torch.manual_seed(0)
    clip = open_clip.CLIP(**TINY_CLIP_CFG)
    sd_file, ckpt_file, jit_file = tmp_path / "sd.pt", tmp_path / "ckpt.pt", tmp_path / "jit.pt"
    torch.save(clip.state_dict(), sd_file)
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in clip.state_dict().items()}}, ckpt_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(clip, (torch.randn(1, 3, 64, 64), torch.zeros(1, 77, dtype=torch.long)),
                                 check_trace=False)
    traced.save(str(jit_file))
    for path in (sd_file, ckpt_file, jit_file):
        state = load_clip_state_dict(path)
        assert set(state) == set(clip.state_dict())
        assert all(torch.equal(state[k], v) for k, v in clip.state_dict().items())
    model, cfg = create_clip(dict(TINY_CLIP_CFG, quick_gelu=False), str(jit_file))
    assert cfg["quick_gelu"] is True  # OpenAI TorchScript archives get QuickGELU
    assert type(model.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_clip_weight_errors(tmp_path, monkeypatch):
    with pytest.raises(CLIPWeightsError, match="not found: /no/such/ViT-B-16.pt"):
        create_clip("ViT-B-16", "/no/such/ViT-B-16.pt")
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.conv1.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ValueError, match=r"missing keys: .*unexpected keys|wrong shapes"):
        create_clip("tiny", str(wrong))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CLIPWeightsError, match="cannot read CLIP weights"):
        create_clip("tiny", str(garbage))


def test_hub_name_offline_gives_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CLIPWeightsError, match=r"pass the local file instead: pretrained='/path/to/ViT-B-16.pt'"):
        TCCLIP.from_clip("ViT-B-16", pretrained="openai", class_names=NAMES)


# ------------------------------------------------------------------------------ stored config (SPEC 4b)
CLIP12 = {**TINY_CLIP_CFG, "vision_cfg": {**TINY_CLIP_CFG["vision_cfg"], "layers": 12},
          "text_cfg": {**TINY_CLIP_CFG["text_cfg"], "layers": 12}}
RELEASE_SETTINGS = dict(seed_ratio=0.5, num_context_tokens=8, merge_step=5, stop_gradient=False, num_frames=3,
                        context_length=20)
RELEASE_CONFIG = {"trainer_name": "TCCLIP", "seed_token_a": 0.5, "context_token_k": 8, "tome_r": 5, "tome_d": 0,
                  "im_stop_grad": False, "num_frames": 3, "context_length": 20, "n_ctx": 4,
                  "positional_embedding_type": "space", "local_global_bias": True}


@pytest.fixture(scope="module")
def clip12_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip12") / "clip12.pt"
    torch.save(open_clip.CLIP(**CLIP12).state_dict(), path)
    return path


def hand_built(model_name, clip_file, **switches) -> TCCLIP:
    """A model built by hand with the given switches, its new parameters made non-trivial."""
    torch.manual_seed(1)
    model = TCCLIP.from_clip(model_name, str(clip_file), NAMES, quick_gelu=True, **switches).eval()
    with torch.no_grad():
        for p in model.visual.local_global_bias.values():
            p.normal_(std=0.3)
        for p in model.vp_blocks.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def clip_video(frames=3) -> torch.Tensor:
    return torch.randn(1, frames, 3, 64, 64, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize(("level", "layers"), [("11+12", [10, 11]), (6, [5])])
def test_release_settings_come_from_the_stored_config(tmp_path, clip12_file, level, layers):
    model = hand_built(CLIP12, clip12_file, vp_layers=layers, **RELEASE_SETTINGS)
    path = save_release(tmp_path / "release.pth", to_release_layout(model),
                        {**RELEASE_CONFIG, "prompt_generation_layer_level": level})
    loaded = TCCLIP.from_release_checkpoint(path, str(clip12_file), NAMES, model_name=CLIP12).eval()
    for key, value in RELEASE_SETTINGS.items():
        assert getattr(loaded.config, key) == value, key
    assert loaded.vp_layers == layers and len(loaded.vp_blocks) == len(layers)
    with torch.no_grad():
        assert torch.equal(loaded(clip_video()), model(clip_video()))
    # the stored settings matter: the defaults (seed ratio 0.3, k 96, r 100) give other logits
    with pytest.warns(UserWarning, match="OVERRIDING"):
        default = TCCLIP.from_release_checkpoint(path, str(clip12_file), NAMES, model_name=CLIP12, seed_ratio=0.3,
                                                 num_context_tokens=96, merge_step=100, allow_override=True)
    with torch.no_grad():
        assert not torch.allclose(default.eval()(clip_video()), model(clip_video()))


def test_release_settings_that_contradict_the_caller_are_refused_by_name(tmp_path, clip12_file):
    model = hand_built(CLIP12, clip12_file, vp_layers=[5], **RELEASE_SETTINGS)
    path = save_release(tmp_path / "release.pth", to_release_layout(model),
                        {**RELEASE_CONFIG, "prompt_generation_layer_level": 6})
    load = functools.partial(TCCLIP.from_release_checkpoint, path, str(clip12_file), NAMES, model_name=CLIP12)
    with pytest.raises(ValueError, match=r"seed_ratio: the file says 0.5, the caller 0.3"):
        load(seed_ratio=0.3)
    with pytest.raises(ValueError, match=r"num_frames: the file says 3, the caller 8.*vp_layers: the file says \[5\]"):
        load(config=TCCLIPConfig(num_frames=8, vp_layers=[11]))
    assert load(config=TCCLIPConfig(**RELEASE_SETTINGS, vp_layers=[-7])).config.vp_layers == [5]  # agrees
    with pytest.warns(UserWarning, match="OVERRIDING.*merge_step: the file says 5, the caller 9"):
        forced = load(merge_step=9, allow_override=True)
    assert forced.config.merge_step == 9 and forced.config.seed_ratio == 0.5


@pytest.mark.parametrize(("change", "match"), [
    ({"tome_d": 2}, r"tome_d=2: a per-layer merge schedule is not supported"),
    ({"prompt_generation_layer_level": "12+13"}, r"prompt_generation_layer_level='12\+13' names layers outside 1..12"),
    ({"prompt_generation_layer_level": 12, "n_ctx": 8}, r"contradicts its tensors \(n_ctx: config 8, tensors 4\)"),
    ({"trainer_name": "XCLIP"}, r"trainer_name='XCLIP' is not one of"),
    ({"seed_token_a": "${model.seed}"}, r"'seed_token_a' refers to \$\{model.seed\}, which the config lacks"),
])
def test_bad_stored_configs_are_refused_clearly(tmp_path, clip12_file, change, match):
    model = hand_built(CLIP12, clip12_file, vp_layers=[11], **RELEASE_SETTINGS)
    path = save_release(tmp_path / "release.pth", to_release_layout(model), {**RELEASE_CONFIG, **change})
    with pytest.raises(CheckpointError, match=match) as err:
        TCCLIP.from_release_checkpoint(path, str(clip12_file), NAMES, model_name=CLIP12)
    assert str(path) in str(err.value)


def test_two_vp_blocks_without_a_stored_config_need_vp_layers(tmp_path, clip12_file):
    model = hand_built(CLIP12, clip12_file, vp_layers=[10, 11], **RELEASE_SETTINGS)
    path = save_release(tmp_path / "release.pth", to_release_layout(model))
    load = functools.partial(TCCLIP.from_release_checkpoint, path, str(clip12_file), NAMES, model_name=CLIP12)
    with pytest.raises(CheckpointError, match="holds 2 VP blocks but no stored config names their layers"):
        load(**RELEASE_SETTINGS)
    loaded = load(vp_layers=[10, 11], **RELEASE_SETTINGS).eval()
    with torch.no_grad():
        assert torch.equal(loaded(clip_video()), model(clip_video()))


@pytest.mark.parametrize(("trainer", "template"), [("ViFiCLIP", "a photo of a {}."), ("VanillaCLIP", "{}")])
def test_baseline_release_files_load_as_those_baselines(tmp_path, trainer, template):
    clip_file = tmp_path / "tiny.pt"
    torch.manual_seed(0)
    torch.save(open_clip.CLIP(**TINY_CLIP_CFG).state_dict(), clip_file)
    model = hand_built("tiny", clip_file, config=TCCLIPConfig.vifi_clip(num_frames=3, prompt_template=template))
    layout = to_release_layout(model, split_qkv=False)
    assert "module.image_encoder.transformer.resblocks.0.attn.in_proj_weight" in layout
    layout["module.prompt_learner.complete_text_embeddings"] = torch.zeros(len(NAMES), 77, 64)
    stored = {"trainer_name": trainer, "num_frames": 3, "n_ctx": 4, "context_token_k": 96,
              "prompt_generation_layer_level": 12}  # the TC-CLIP keys a baseline's config also carries
    path = save_release(tmp_path / "baseline.pth", layout, stored)
    loaded = TCCLIP.from_release_checkpoint(path, str(clip_file), NAMES, model_name="tiny").eval()
    assert not loaded.config.use_tc and not loaded.config.use_vp and loaded.config.n_ctx == 0
    assert loaded.config.prompt_template == template
    with torch.no_grad():
        assert torch.equal(loaded(clip_video()), model(clip_video()))


def test_real_omegaconf_bytes_are_read_as_plain_data():
    obj = RestrictedUnpickler(io.BytesIO(REAL_OMEGACONF_PICKLE.read_bytes())).load()
    plain = to_plain(obj)
    assert plain["prompt_generation_layer_level"] == "11+12" and plain["data"]["train"]["num_classes"] == 400
    assert plain["data"]["label_files"] == ["k400.csv"]
    assert release_settings(obj, 12, "release.pth") == {
        "positional_embedding": "space", "local_global_bias": True, "num_context_tokens": 96, "seed_ratio": 0.3,
        "merge_step": 100, "n_ctx": 4, "stop_gradient": True, "context_length": 30, "num_frames": 16,
        "vp_layers": [10, 11],
    }


def test_hub_weights_offline_fail_fast(monkeypatch, tmp_path):
    """Without a network, ``pretrained="openai"`` fails at once (one short probe) instead of retrying."""
    import socket

    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    probes = []

    def unreachable(address, timeout=None, *args, **kwargs):
        probes.append((address, timeout))
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: pytest.fail("open_clip would retry the download"))
    start = time.perf_counter()
    with pytest.raises(CLIPWeightsError, match=r"huggingface.co cannot be reached \(offline\).*pass the local file"):
        TCCLIP.from_clip("ViT-B-16", pretrained="openai", class_names=NAMES)
    assert time.perf_counter() - start < 5
    assert probes == [(("huggingface.co", 443), 3.0)]


def test_hub_weights_already_cached_need_no_network(monkeypatch, tmp_path):
    import huggingface_hub.constants

    from tc_clip.model.factory import hub_weights_source

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--timm--vit_base_patch16_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    weights = repo / "snapshots" / "0123abc" / "open_clip_model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"stand-in")
    source = hub_weights_source("ViT-B-16", "openai")
    assert source.cached == str(weights) and source.host == "huggingface.co"
    assert hub_weights_source("ViT-B-16", "no-such-tag") is None
