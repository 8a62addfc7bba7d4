"""CLIP weights and release checkpoints: formats, exact round trips, safe unpickling, clear errors."""

from __future__ import annotations

import os
import pickle
import warnings

import open_clip
import pytest
import torch

from tc_clip import TCCLIP
from tc_clip.model import TINY_CLIP_CFG, CLIPWeightsError, create_clip, load_clip_state_dict

NAMES = ["archery", "bowling", "ApplyEyeMakeup"]


class FakeDictConfig:
    """Stands for the OmegaConf object the release files carry (unknown to the loader)."""

    def __init__(self, **content):
        self.content = content


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/tc_clip_pwned",))


def to_release_layout(model: TCCLIP) -> dict[str, torch.Tensor]:
    """Write a TCCLIP state dict the way the authors' release stores it (SPEC section 4)."""
    out = {}
    for key, value in model.state_dict().items():
        if key == "token_embedding.weight":
            continue
        if key == "prompt_ctx":
            out["prompt_learner.ctx"] = value
        elif key.startswith("visual.local_global_bias."):
            layer = key.rsplit(".", 1)[1]
            out[f"image_encoder.transformer.resblocks.{layer}.attn.local_global_bias_table"] = value
        elif key.startswith("visual.") and key.endswith(("attn.in_proj_weight", "attn.in_proj_bias")):
            base = key.removeprefix("visual.").rsplit(".", 1)[0]
            kind = "weight" if key.endswith("weight") else "bias"
            for name, part in zip("qkv", value.chunk(3), strict=True):
                out[f"image_encoder.{base}.{name}_proj.{kind}"] = part.clone()
        elif key.startswith("visual."):
            out["image_encoder." + key.removeprefix("visual.")] = value
        elif key.startswith("vp_blocks."):
            out["text_encoder.prompt_generation_layer." + key.removeprefix("vp_blocks.")] = value
        elif key == "logit_scale":
            out[key] = value
        else:
            out["text_encoder." + key] = value
    out["prompt_learner.token_prefix"] = torch.zeros(len(NAMES), 1, 512)
    out["prompt_learner.token_suffix"] = torch.zeros(len(NAMES), 72, 512)
    return {"module." + k: v for k, v in out.items()}


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
    release = {
        "model": to_release_layout(model),
        "epoch": 9,
        "max_accuracy": 54.2,
        "config": FakeDictConfig(DATA={"NUM_FRAMES": 2}),
        "exploit": Exploit(),
    }
    path = tmp_path / "zero_shot_k400_tc_clip.pth"
    torch.save(release, path)
    if os.path.exists("/tmp/tc_clip_pwned"):
        os.remove("/tmp/tc_clip_pwned")

    loaded = TCCLIP.from_release_checkpoint(path, clip_weights=str(vit_b16_file), class_names=NAMES, num_frames=2)
    assert not os.path.exists("/tmp/tc_clip_pwned"), "a pickled call was executed"
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
    pickled = tmp_path / "exploit.pt"
    with open(pickled, "wb") as f:
        pickle.dump({"x": Exploit()}, f)
    with pytest.raises(CLIPWeightsError):
        create_clip("tiny", str(pickled))


def test_hub_name_offline_gives_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CLIPWeightsError, match=r"pass the local file instead: pretrained='/path/to/ViT-B-16.pt'"):
        TCCLIP.from_clip("ViT-B-16", pretrained="openai", class_names=NAMES)
