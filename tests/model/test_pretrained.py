"""Model folders: exact round trips, a strict config.json, no unpickling, no network for a folder, and the Hub
(cached snapshots offline, a clear and fast error without one, uploads)."""

from __future__ import annotations

import json
import pickle
import socket
import time
from pathlib import Path

import pytest
import torch

from release_helpers import Payload
from tc_clip import TCCLIP, inference
from tc_clip.model import CheckpointError
from tc_clip.model.pretrained import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, read_config

NAMES = ["archery", "bowling", "ApplyEyeMakeup"]


def video(frames: int = 8, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model() -> TCCLIP:
    m = inference.tiny_model(NAMES, positional_embedding="joint")
    with torch.no_grad():  # move every TC-CLIP-only parameter off its initial value
        for p in m.visual.local_global_bias.values():
            p.normal_(std=0.3)
        m.prompt_ctx.add_(torch.randn_like(m.prompt_ctx))
    return m


@pytest.fixture()
def folder(tmp_path, model) -> Path:
    return model.save_pretrained(tmp_path / "model", provenance={"checkpoint": "best.ckpt", "wise_ft": None})


def edit_config(folder: Path, change) -> None:
    path = folder / CONFIG_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_round_trip_gives_identical_logits_and_everything_the_model_was(folder, model):
    assert sorted(p.name for p in folder.iterdir()) == [CARD_FILE, CONFIG_FILE, WEIGHTS_FILE]
    loaded = TCCLIP.from_pretrained(folder)
    assert not loaded.training and loaded.class_names == NAMES
    assert loaded.config == model.config and loaded.clip_cfg == model.clip_cfg
    assert loaded.provenance == {"checkpoint": "best.ckpt", "wise_ft": None}
    x = video()
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value) and loaded.state_dict()[key].dtype == value.dtype, key
    again = loaded.save_pretrained(folder.parent / "again")  # provenance travels with a loaded model
    assert read_config(again)["provenance"] == {"checkpoint": "best.ckpt", "wise_ft": None}


def test_load_model_and_the_vocabulary_override_accept_a_folder(folder, model):
    loaded = inference.load_model(folder, class_names=["juggling", "cooking"])
    assert loaded.class_names == ["juggling", "cooking"]
    with pytest.raises(TypeError, match="a model folder takes no other arguments"):
        inference.load_model(folder, num_frames=4)
    model_copy = inference.load_model(folder)
    clip, _ = inference.synthetic_video(folder.parent / "v.mp4")
    x, _ = inference.read_clip(clip, num_frames=8, size=64)
    assert inference.predict(model_copy, x, top_k=3) == inference.predict(model, x, NAMES, top_k=3)


def test_the_notebooks_loader_takes_a_folder(folder, model, monkeypatch):
    loaded = inference.load_demo_model(checkpoint=folder)
    assert not loaded.is_fallback and loaded.model.class_names == NAMES
    monkeypatch.setenv(inference.DEMO_CHECKPOINT_ENV, str(folder))
    assert inference.find_demo_checkpoint() == folder
    assert torch.equal(logits_of(inference.load_demo_model().model), logits_of(model))


def logits_of(m: TCCLIP) -> torch.Tensor:
    with torch.no_grad():
        return m.eval()(video())


def test_model_card_states_architecture_switches_vocabulary_and_licence(folder):
    card = (folder / CARD_FILE).read_text()
    assert card.startswith("---\nlibrary_name: tc-clip\nlicense: other\n")
    for text in ("## Architecture", "vision: ViT, 3 layers, width 64, 8x8 patches, 64x64 frames",
                 "| positional_embedding | `joint` |", "| num_context_tokens | `16` |",
                 "3 classes", "archery, bowling, ApplyEyeMakeup", "## Training protocol and data",
                 "No evaluation figures", "- checkpoint: `best.ckpt`", "OpenAI's CLIP", "MIT licence"):
        assert text in card, text


def test_reading_a_folder_unpickles_nothing_and_opens_no_connection(folder, model, monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("a folder load must not unpickle or connect")

    for target, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load"),
                         (socket, "create_connection"), (socket.socket, "connect")):
        monkeypatch.setattr(target, name, refuse)
    loaded = TCCLIP.from_pretrained(folder)
    x = video()
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    # a pickle (with a payload) in place of the weights: refused as not safetensors, never run
    marker = tmp_path / "pwned"
    monkeypatch.undo()
    (folder / WEIGHTS_FILE).write_bytes(pickle.dumps({"w": Payload(marker)}))
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as err:
        TCCLIP.from_pretrained(folder)
    assert str(folder / WEIGHTS_FILE) in str(err.value) and not marker.exists()


def test_weights_that_do_not_fit_the_config_are_refused_by_key(folder, model, tmp_path):
    other = inference.tiny_model(NAMES, num_frames=4, positional_embedding="joint").save_pretrained(tmp_path / "o")
    (folder / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match=r"wrong shapes: visual.positional_embedding"):
        TCCLIP.from_pretrained(folder)
    data = (folder / WEIGHTS_FILE).read_bytes()
    (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        TCCLIP.from_pretrained(folder)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="model.safetensors: missing"):
        TCCLIP.from_pretrained(folder)


def _set(path: str, value):
    def change(data):
        node = data
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return change


def _drop(path: str):
    def change(data):
        node = data
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        del node[last]
    return change


BAD_CONFIGS = {
    "remote timm tower": (_set("clip.vision_cfg.timm_model_name", "hf-hub:evil/model"),
                          "clip.vision_cfg.timm_model_name.*refused.*outside the folder"),
    "remote HF text tower": (_set("clip.text_cfg.hf_model_name", "evil/bert"), "clip.text_cfg.hf_model_name.*refused"),
    "remote tokenizer": (_set("clip.text_cfg.hf_tokenizer_name", "evil/tok"), "hf_tokenizer_name.*refused"),
    "unknown architecture key": (_set("clip.vision_cfg.block_type", "x"), "clip.vision_cfg.block_type.*not an arch"),
    "unknown top-level clip key": (_set("clip.cast_dtype", "float16"), "clip.cast_dtype"),
    "string where an int goes": (_set("clip.vision_cfg.layers", "3"), r"clip.vision_cfg.layers.*positive int"),
    "bool where an int goes": (_set("clip.embed_dim", True), "clip.embed_dim"),
    "negative width": (_set("clip.text_cfg.width", -64), "clip.text_cfg.width"),
    "missing architecture part": (_drop("clip.text_cfg"), "clip.text_cfg.*missing"),
    "unknown switch": (_set("config.use_magic", True), "config.use_magic.*not a TCCLIPConfig switch"),
    "missing switch": (_drop("config.use_vp"), "misses the switches use_vp"),
    "switch of the wrong type": (_set("config.num_frames", "8"), r"config.num_frames.*does not fit"),
    "int where a bool goes": (_set("config.use_tc", 1), "config.use_tc"),
    "unknown option": (_set("config.aggregation", "magic"), "config.aggregation"),
    "format-string template": (_set("config.prompt_template", "{0.__class__}"), "config.prompt_template"),
    "a value the model refuses": (_set("config.seed_ratio", 2.0), r"config.json: does not build a model.*seed_ratio"),
    "class names not strings": (_set("class_names", [1, 2]), "class_names.*list of strings"),
    "blank class name": (_set("class_names", ["a", " "]), "does not build a model.*blank names"),
    "unknown top-level key": (_set("code", "import os"), "'code': not a key"),
    "other format": (_set("format", "transformers"), "format.*not a tc-clip model folder"),
    "newer version": (_set("format_version", 2), "format_version.*reads version 1"),
    "provenance not an object": (_set("provenance", [1]), "provenance.*expected an object"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_config_json_is_checked_key_by_key(folder, case):
    change, match = BAD_CONFIGS[case]
    edit_config(folder, change)
    with pytest.raises(CheckpointError, match=match) as err:
        TCCLIP.from_pretrained(folder)
    assert str(folder / CONFIG_FILE) in str(err.value)


@pytest.mark.parametrize("text, match", [
    ('{"format": "tc-clip", "format": "tc-clip"}', "duplicate keys"),
    ('{"format": NaN}', "NaN is not a JSON number"),
    ('{"format": "tc-clip",', "not valid JSON \\(line 1"),
    ("[1, 2]", "expected a JSON object"),
])
def test_config_json_that_is_no_clean_json_object_is_refused(folder, text, match):
    (folder / CONFIG_FILE).write_text(text)
    with pytest.raises(CheckpointError, match=match):
        TCCLIP.from_pretrained(folder)


def test_paths_that_are_no_folder_and_no_repo_id_say_so(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        TCCLIP.from_pretrained(tmp_path / "no" / "such" / "folder")
    with pytest.raises(CheckpointError, match="is a file, not a model folder"):
        TCCLIP.from_pretrained(folder / CONFIG_FILE)
    with pytest.raises(ValueError, match="revision='v1' applies to Hub ids"):
        TCCLIP.from_pretrained(folder, revision="v1")


# ------------------------------------------------------------------------------------------------ Hub
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cached_snapshot(cache: Path, repo: str, source: Path, ref: str = "main") -> Path:
    """The layout huggingface_hub's cache gives a downloaded snapshot."""
    base = cache / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for name in (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE):
        (snap / name).write_bytes((source / name).read_bytes())
    (base / "refs").mkdir()
    (base / "refs" / ref).write_text(COMMIT)
    return snap


@pytest.fixture()
def unreachable_hub(monkeypatch):
    """The Hub endpoint is a local port nobody listens on (refused at once, whatever the machine's network)."""
    from huggingface_hub import constants

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "hub-unreachable"])
def test_hub_id_uses_the_cached_snapshot_without_network(tmp_path, folder, model, monkeypatch, unreachable_hub,
                                                         offline):
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hub"
    cached_snapshot(cache, "someone/tc-clip-demo", folder)
    start = time.monotonic()
    loaded = TCCLIP.from_pretrained("someone/tc-clip-demo", cache_dir=cache)
    assert time.monotonic() - start < 30
    x = video()
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert TCCLIP.from_pretrained("someone/tc-clip-demo", revision=COMMIT, cache_dir=cache).class_names == NAMES


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "hub-unreachable"])
def test_hub_id_without_a_cached_snapshot_fails_fast_and_says_so(tmp_path, monkeypatch, unreachable_hub, offline):
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=r"someone/missing@v2: .*no cached snapshot in .*hub.*(HF_HUB_OFFLINE "
                                              r"is set|cannot be reached|download failed)"):
        TCCLIP.from_pretrained("someone/missing", revision="v2", cache_dir=tmp_path / "hub")
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("cached", [False, True], ids=["no-snapshot", "cached-snapshot"])
def test_a_hub_that_accepts_but_never_answers_costs_seconds(tmp_path, folder, monkeypatch, cached):
    from huggingface_hub import constants

    silent = socket.socket()  # accepts connections (the kernel's backlog) and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    if cached:
        cached_snapshot(tmp_path / "hub", "someone/tc-clip-demo", folder)
    start = time.monotonic()
    try:
        if cached:
            assert TCCLIP.from_pretrained("someone/tc-clip-demo", cache_dir=tmp_path / "hub").class_names == NAMES
        else:
            with pytest.raises(CheckpointError, match=r"no cached snapshot.*did not answer within 5 s"):
                TCCLIP.from_pretrained("someone/tc-clip-demo", cache_dir=tmp_path / "hub")
    finally:
        silent.close()
    assert time.monotonic() - start < 20


def test_push_to_hub_uploads_the_folder_files(model, monkeypatch):
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs.get("private"), kwargs.get("exist_ok"))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        calls["config"] = json.loads((Path(folder_path) / CONFIG_FILE).read_text())
        calls["allow"] = kwargs.get("allow_patterns")
        return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    url = model.push_to_hub("someone/tc-clip-demo", private=True)
    assert url == "https://huggingface.co/someone/tc-clip-demo/commit/abc"
    assert calls["create"] == ("someone/tc-clip-demo", True, True)
    assert calls["files"] == [CARD_FILE, CONFIG_FILE, WEIGHTS_FILE]
    assert calls["config"]["class_names"] == NAMES and "model.onnx" in calls["allow"]
    with pytest.raises(ValueError, match="not a Hub repo id"):
        model.push_to_hub("../etc")
