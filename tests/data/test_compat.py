"""The data layer's old import paths (before the split into rooms) still work for one release: each use
warns with a DeprecationWarning that names the new place, and gives the very same object."""

import importlib
import sys

import pytest

import tc_clip.data
import tc_clip.data.datamodule as old_datamodule
from tc_clip.data import decoding, protocols, splits
from tc_clip.data.decoding import torchcodec

MOVED_FROM_DATAMODULE = [
    ("HMDB51DataModule", tc_clip.data),
    ("UCF101DataModule", tc_clip.data),
    ("SSv2DataModule", tc_clip.data),
    ("Kinetics400DataModule", tc_clip.data),
    ("Kinetics600DataModule", tc_clip.data),
    ("SyntheticVideoDataModule", tc_clip.data),
    ("ZeroShotSuiteDataModule", tc_clip.data),
    ("EvalSetInfo", tc_clip.data),
    ("SplitData", splits),
    ("TrainInfo", splits),
    ("TrainSource", splits),
    ("EVAL_STAGES", splits),
]


@pytest.mark.parametrize(("name", "new"), MOVED_FROM_DATAMODULE)
def test_old_datamodule_names_warn_and_forward(name, new):
    with pytest.warns(DeprecationWarning, match=rf"tc_clip\.data\.datamodule\.{name} moved to "):
        got = getattr(old_datamodule, name)
    assert got is getattr(new, name)


def test_from_import_of_an_old_name_warns():
    with pytest.warns(DeprecationWarning, match="moved to tc_clip.data.HMDB51DataModule"):
        from tc_clip.data.datamodule import HMDB51DataModule
    assert HMDB51DataModule is tc_clip.data.HMDB51DataModule
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        old_datamodule.Nothing  # noqa: B018


@pytest.mark.parametrize(
    ("old", "expected"),
    [
        ("tc_clip.data.base_novel", {name: getattr(protocols, name) for name in
                                     ("PublishedSplit", "name_key", "published_split", "published_base_ids")}),
        ("tc_clip.data.torchcodec_backend", {
            "BACKENDS": decoding.CHOICES, "Backend": decoding.Backend, "resolve_backend": decoding.resolve_backend,
            "describe_backend": decoding.describe_backend, "torchcodec_status": torchcodec.torchcodec_status,
            "read_frames": torchcodec.read_frames,
        }),
    ],
)
def test_old_modules_warn_on_import_and_forward(old, expected, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)  # imported before: import it afresh
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to "):
        module = importlib.import_module(old)
    assert set(module.__all__) == set(expected)
    for name, obj in expected.items():
        assert getattr(module, name) is obj, name


def test_the_old_name_of_the_decoder_choices_warns():
    with pytest.warns(DeprecationWarning, match=r"BACKENDS moved to tc_clip\.data\.decoding\.CHOICES"):
        assert decoding.BACKENDS is decoding.CHOICES


def test_the_dataset_still_offers_the_decoder_list():
    from tc_clip.data.dataset import DECODERS

    assert DECODERS is decoding.DECODERS == ("pyav", "torchcodec")
    assert decoding.CHOICES == ("auto", *decoding.DECODERS)
