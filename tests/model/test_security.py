"""Loading a file never runs code from it: every load path against planted payloads and broken files."""

from __future__ import annotations

import pickle
import warnings
import zipfile

import open_clip
import pytest
import torch

from release_helpers import Payload, save_release
from tc_clip import TCCLIP, inference
from tc_clip.model import TINY_CLIP_CFG, CheckpointError, CLIPWeightsError, create_clip, load_clip_state_dict
from tc_clip.model.serialization import safe_load, torchscript_state_dict

NAMES = ["archery", "bowling", "ApplyEyeMakeup"]


@pytest.fixture()
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a pickled call was executed"


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "tiny.pt"
    torch.save(open_clip.CLIP(**TINY_CLIP_CFG).state_dict(), path)
    return path


def release_layout():
    from release_helpers import to_release_layout

    return to_release_layout(TCCLIP.from_clip("tiny", class_names=NAMES, num_frames=2))


def planted(kind: str, path, marker):
    """A file of ``kind`` holding a payload: a zip archive (torch.save) or a legacy raw pickle."""
    blob = {"model": {"x": torch.ones(2)}, "state_dict": {}, "config": {}, "clip_cfg": {}, "hyper_parameters": {},
            "payload": Payload(marker)}
    if kind == "zip":
        torch.save(blob, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(blob, fh, protocol=2)
    return path


LOADERS = {
    "safe_load": lambda path, clip: safe_load(path),
    "TCCLIP.load": lambda path, clip: TCCLIP.load(path),
    "from_release_checkpoint": lambda path, clip: TCCLIP.from_release_checkpoint(path, str(clip), NAMES,
                                                                                 model_name="tiny"),
    "load_model": lambda path, clip: inference.load_model(path),
    "load_model+clip_weights": lambda path, clip: inference.load_model(path, clip_weights=clip, model_name="tiny"),
    "load_clip_state_dict": lambda path, clip: load_clip_state_dict(path),
    "create_clip": lambda path, clip: create_clip("tiny", str(path)),
    "load_model(clip_weights=payload)": lambda path, clip: inference.load_model(
        save_release(path.with_name("ok.pth"), release_layout()), clip_weights=path, model_name="tiny"),
}


@pytest.mark.parametrize("kind", ["zip", "raw-pickle"])
@pytest.mark.parametrize("loader", list(LOADERS))
def test_planted_payload_is_refused_naming_the_file(tmp_path, marker, clip_file, kind, loader):
    path = planted(kind, tmp_path / "evil.pth", marker)
    with pytest.raises((CheckpointError, CLIPWeightsError)) as err:
        LOADERS[loader](path, clip_file)
    assert str(path) in str(err.value)
    assert "refused to rebuild" in str(err.value) or "unsupported GLOBAL" in str(err.value)  # says which global


def test_payload_inside_the_release_config_is_refused(tmp_path, marker, clip_file):
    path = save_release(tmp_path / "release.pth", release_layout(), {"num_frames": 2, "hook": Payload(marker)})
    with pytest.raises(CheckpointError, match=r"refused to rebuild (posix|os)\.system") as err:
        TCCLIP.from_release_checkpoint(path, str(clip_file), NAMES, model_name="tiny")
    assert str(path) in str(err.value)


def test_lightning_checkpoint_with_payload(tmp_path, marker):
    from tc_clip.lightning import TCCLIPModule

    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model_name": "tiny"}, "loops": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to rebuild") as err:
        inference.load_model(path)
    assert str(path) in str(err.value)
    with pytest.raises(pickle.UnpicklingError):  # Lightning's own loader, with torch's weights-only default
        TCCLIPModule.load_from_checkpoint(str(path))


def scripted_clip(path):
    torch.manual_seed(0)
    clip = open_clip.CLIP(**TINY_CLIP_CFG)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(clip, (torch.randn(1, 3, 64, 64), torch.zeros(1, 77, dtype=torch.long)),
                                 check_trace=False)
    traced.save(str(path))
    return path


def test_torchscript_archive_is_read_as_data(tmp_path, monkeypatch):
    path = scripted_clip(tmp_path / "ViT-tiny.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated: the reference only
        expected = torch.jit.load(str(path)).state_dict()

    def no_jit(*args, **kwargs):
        raise AssertionError("torch.jit.load must not be called")

    monkeypatch.setattr(torch.jit, "load", no_jit)
    state = torchscript_state_dict(path)
    assert list(state) == list(expected)
    assert all(torch.equal(state[k], v) and state[k].dtype == v.dtype for k, v in expected.items())
    model, cfg = create_clip("tiny", str(path))
    assert cfg["quick_gelu"] is True


def test_torchscript_archive_with_payload(tmp_path, marker, monkeypatch):
    good = scripted_clip(tmp_path / "good.pt")
    evil = tmp_path / "ViT-B-16.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps({"visual": Payload(marker)}, protocol=2)
            dst.writestr(info, data)
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load called"))
    with pytest.raises(CLIPWeightsError, match=r"refused to rebuild (posix|os)\.system") as err:
        create_clip("tiny", str(evil))
    assert str(evil) in str(err.value)


@pytest.mark.parametrize("loader", ["TCCLIP.load", "load_model", "from_release_checkpoint", "load_clip_state_dict"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_broken_files_name_the_file_and_the_cause(tmp_path, clip_file, loader, damage):
    good = tmp_path / "good.pth"
    TCCLIP.from_clip("tiny", class_names=NAMES, num_frames=2).save(good)
    data = {"truncated": good.read_bytes()[: good.stat().st_size // 2], "garbage": b"not a checkpoint" * 10,
            "empty": b""}[damage]
    path = tmp_path / "broken.pth"
    path.write_bytes(data)
    with pytest.raises((CheckpointError, CLIPWeightsError)) as err:
        LOADERS[loader](path, clip_file)
    message = str(err.value)
    assert str(path) in message
    assert "clip_weights" not in message  # the real cause, not advice about another argument
    if damage == "truncated":
        assert "truncated" in message


def test_legacy_plain_files_are_still_read(tmp_path):
    path = tmp_path / "legacy.pt"
    state = open_clip.CLIP(**TINY_CLIP_CFG).state_dict()
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    loaded = load_clip_state_dict(path)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_remote_paths_are_refused():
    with pytest.raises(CheckpointError, match="remote paths are not loaded"):
        inference.load_model("https://example.com/model.ckpt")
    with pytest.raises(CheckpointError, match="remote paths are not loaded"):
        safe_load("http://example.com/model.pth")


def test_numpy_rng_states_are_read_as_data(tmp_path, marker):
    import numpy as np

    state = {"numpy_rng": np.random.RandomState(3).get_state(), "best": np.float64(0.75), "raw": b"\x00\xff",
             "torch_rng": torch.Generator().manual_seed(1).get_state()}
    path = tmp_path / "rng.ckpt"
    torch.save(state, path)
    back = safe_load(path)
    assert back["numpy_rng"][0] == "MT19937" and np.array_equal(back["numpy_rng"][1], state["numpy_rng"][1])
    assert back["best"] == 0.75 and back["raw"] == b"\x00\xff" and torch.equal(back["torch_rng"], state["torch_rng"])
    torch.save({"objects": np.array([Payload(marker)], dtype=object)}, path)
    with pytest.raises(CheckpointError, match=r"refused to rebuild (posix|os)\.system"):
        safe_load(path)
