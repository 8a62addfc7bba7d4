"""Loading a file never reaches the network, never changes the loader, and never ends in a RecursionError
(issue 17, points 2-4)."""

from __future__ import annotations

import copy
import socket
import struct
import time
import zipfile

import pytest
import torch

from release_helpers import omegaconf_object, omegaconf_standins, save_release
from tc_clip import TCCLIP, TCCLIPConfig, inference
from tc_clip.model import TINY_CLIP_CFG, CheckpointError
from tc_clip.model.checkpoint import load_release_checkpoint, release_settings
from tc_clip.model.serialization import safe_load, to_plain

NAMES = ["archery", "bowling", "ApplyEyeMakeup"]


@pytest.fixture()
def offline(monkeypatch):
    """Every attempt to open a connection (or to resolve a host name) fails at once and is recorded."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield attempts
    assert not attempts, f"loading a file tried to open a network connection: {attempts[:3]}"


@pytest.fixture(scope="module")
def saved_blob(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pth"
    TCCLIP.from_clip("tiny", class_names=NAMES, num_frames=2).save(path)
    return torch.load(path, weights_only=True)


def _with_clip_cfg(blob: dict, path, edit) -> None:
    blob = copy.deepcopy(blob)
    edit(blob["clip_cfg"])
    torch.save(blob, path)


# ------------------------------------------------------------------------------------------ point 2
NETWORK_CFGS = {
    "timm hub name": (lambda c: c["vision_cfg"].update(timm_model_name="hf-hub:someone/model"),
                      "vision_cfg.timm_model_name"),
    "timm pretrained": (lambda c: c["vision_cfg"].update(timm_model_name="vit_tiny_patch16_224",
                                                         timm_model_pretrained=True), "vision_cfg.timm_model"),
    "hf text tower": (lambda c: c["text_cfg"].update(hf_model_name="someone/model"), "text_cfg.hf_model_name"),
    "hf tokenizer": (lambda c: c["text_cfg"].update(hf_tokenizer_name="someone/model"),
                     "text_cfg.hf_tokenizer_name"),
    "unknown top key": (lambda c: c.update(custom_text=True), "custom_text"),
    "string width": (lambda c: c["vision_cfg"].update(width="64"), "vision_cfg.width"),
    "bool layers": (lambda c: c["text_cfg"].update(layers=True), "text_cfg.layers"),
    "negative width": (lambda c: c.update(embed_dim=-1), "embed_dim"),
    "huge width": (lambda c: c["text_cfg"].update(width=2**40), "text_cfg.width"),
    "not a mapping": (lambda c: c.update(vision_cfg=["hf-hub:someone/model"]), "vision_cfg"),
}


@pytest.mark.parametrize("case", list(NETWORK_CFGS))
@pytest.mark.parametrize("loader", ["load_model", "TCCLIP.load"])
def test_a_saved_model_cannot_name_network_or_unknown_architecture(tmp_path, offline, saved_blob, case, loader):
    edit, key = NETWORK_CFGS[case]
    path = tmp_path / "model.pth"
    _with_clip_cfg(saved_blob, path, edit)
    start = time.monotonic()
    with pytest.raises(CheckpointError) as err:
        inference.load_model(path) if loader == "load_model" else TCCLIP.load(path)
    assert time.monotonic() - start < 5
    assert str(path) in str(err.value) and f"clip_cfg.{key}" in str(err.value)


def test_a_saved_model_with_a_known_architecture_still_loads(tmp_path, offline, saved_blob):
    path = tmp_path / "model.pth"
    _with_clip_cfg(saved_blob, path, lambda c: c["vision_cfg"].update(mlp_ratio=4.0, ls_init_value=None))
    assert TCCLIP.load(path).class_names == NAMES


def _lightning_checkpoint(path, **hparams):
    from tc_clip.lightning import TCCLIPModule

    torch.manual_seed(0)
    module = TCCLIPModule(model_name="tiny", class_names=NAMES,
                          config=TCCLIPConfig(num_frames=2, num_context_tokens=8, merge_step=20))
    saved = {**dict(module.hparams), **hparams}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": saved,
                "pytorch-lightning_version": "2.6.0", "tc_clip_class_names": NAMES}, path)
    return module


@pytest.mark.parametrize("model_name", [
    "hf-hub:someone/model",
    "local-dir:/tmp/somewhere",
    {**TINY_CLIP_CFG, "vision_cfg": {**TINY_CLIP_CFG["vision_cfg"], "timm_model_name": "hf-hub:someone/model"}},
])
def test_a_lightning_checkpoint_cannot_name_a_network_architecture(tmp_path, offline, model_name):
    path = tmp_path / "last.ckpt"
    _lightning_checkpoint(path, model_name=model_name)
    start = time.monotonic()
    with pytest.raises(CheckpointError) as err:
        inference.load_model(path)
    assert time.monotonic() - start < 5
    assert str(path) in str(err.value) and "model_name" in str(err.value)


def test_a_lightning_checkpoint_with_hub_weights_loads_offline(tmp_path, offline):
    """The weights are in the checkpoint: a hub tag in ``pretrained`` is never fetched, and the
    architecture it implies (QuickGELU for OpenAI's weights) is kept."""
    path = tmp_path / "last.ckpt"
    module = _lightning_checkpoint(path, pretrained="openai")
    model = inference.load_model(path)
    video = torch.randn(1, 2, 3, 64, 64)
    module.model.set_class_names(NAMES)
    with torch.no_grad():
        assert torch.allclose(model(video), module.model.eval()(video), atol=1e-5)


def test_cli_refuses_a_checkpoint_architecture_that_reaches_the_network():
    from tc_clip.cli.options import checkpoint_model_options

    updates, errors = checkpoint_model_options(
        {"model_name": "ViT-B-16"}, {"model_name": "ViT-B-16"}, {"model_name": "hf-hub:someone/model"}, False)
    assert "model_name" not in updates
    assert any("model_name" in e and "hf-hub:someone/model" in e for e in errors)


# ------------------------------------------------------------------------------------------ point 3
def _crafted_archive(path, pickle_bytes: bytes) -> None:
    """A torch zip archive whose ``data.pkl`` is ``pickle_bytes``."""
    torch.save({"x": 1}, path)
    good = path.read_bytes()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(good)
    with zipfile.ZipFile(tmp) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, pickle_bytes if info.filename.endswith("/data.pkl") else src.read(info))


def _build_on(module: str, name: str, attr: str, value_global: tuple[str, str]) -> bytes:
    """``GLOBAL module.name``, then BUILD with the slot state ``{attr: GLOBAL value}``; the file loads as ``{}``."""
    text = attr.encode()
    return (b"\x80\x02" + f"c{module}\n{name}\n".encode() + b"N}" + b"X" + struct.pack("<I", len(text)) + text
            + f"c{value_global[0]}\n{value_global[1]}\n".encode() + b"s\x86b0}.")


BUILDS = {
    "class": ("collections", "defaultdict", "__init__", ("torch._utils", "_rebuild_tensor")),
    "function": ("torch._utils", "_rebuild_tensor_v2", "__call__", ("torch._utils", "_rebuild_tensor")),
    "record class": ("omegaconf.dictconfig", "DictConfig", "__setstate__", ("torch._utils", "_rebuild_tensor")),
}


@pytest.mark.parametrize("target", list(BUILDS))
def test_a_build_on_an_allowed_class_or_function_is_refused_and_changes_nothing(tmp_path, target):
    module, name, attr, value = BUILDS[target]
    evil = tmp_path / "evil.pth"
    _crafted_archive(evil, _build_on(module, name, attr, value))
    with pytest.raises(CheckpointError) as err:
        safe_load(evil)
    assert str(evil) in str(err.value) and "BUILD" in str(err.value)

    release = save_release(tmp_path / "release.pth", {"module.logit_scale": torch.tensor(4.6)},
                           {"num_frames": 2, "trainer_name": "ViFiCLIP"})
    blob = load_release_checkpoint(release)
    assert torch.equal(blob["model"]["module.logit_scale"], torch.tensor(4.6))
    assert to_plain(blob["config"]) == {"num_frames": 2, "trainer_name": "ViFiCLIP"}


# ------------------------------------------------------------------------------------------ point 4
def _self_containing_release(path, omegaconf: bool) -> None:
    if omegaconf:
        with omegaconf_standins():
            config = omegaconf_object({"num_frames": 2, "model": {"n_ctx": 4}})
            config._content["model"]._content["again"] = config
            torch.save({"model": {"module.logit_scale": torch.tensor(4.6)}, "config": config}, path)
    else:
        config: dict = {"num_frames": 2}
        config["model"] = {"again": config}
        torch.save({"model": {"module.logit_scale": torch.tensor(4.6)}, "config": config}, path)


@pytest.mark.parametrize("omegaconf", [True, False], ids=["omegaconf", "plain"])
def test_a_release_config_that_contains_itself_is_a_checkpoint_error(tmp_path, omegaconf):
    path = tmp_path / "release.pth"
    _self_containing_release(path, omegaconf)
    blob = load_release_checkpoint(path)
    with pytest.raises(CheckpointError, match="contains itself") as err:
        release_settings(blob.get("config"), 12, str(path))
    assert str(path) in str(err.value)


def test_a_self_containing_file_moved_to_a_device_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "release.pth"
    loop: list = [torch.ones(1)]
    loop.append(loop)
    with omegaconf_standins():  # an OmegaConf config: read by the restricted unpickler, then moved
        torch.save({"config": omegaconf_object({"num_frames": 2}), "loop": loop}, path)
    with pytest.raises(CheckpointError, match="contains itself") as err:
        safe_load(path, map_location="meta")
    assert str(path) in str(err.value)


def test_a_release_config_nested_too_deep_is_a_checkpoint_error(tmp_path):
    depth = 5000  # torch.save cannot write it (its pickler recurses): the pickle is written by hand
    deep = b"]" * depth + b"a" * (depth - 1)
    config = b"}(X\x0a\x00\x00\x00num_framesK\x02X\x04\x00\x00\x00deep" + deep + b"u"
    path = tmp_path / "release.pth"
    _crafted_archive(path, b"\x80\x02}(X\x05\x00\x00\x00model}X\x06\x00\x00\x00config" + config + b"u.")
    with pytest.raises(CheckpointError, match="nested") as err:
        release_settings(load_release_checkpoint(path).get("config"), 12, str(path))
    assert str(path) in str(err.value)
