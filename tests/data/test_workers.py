"""``num_workers: auto``: loader workers sized to the machine, shared among a node's processes (issue 20.10)."""

import os
import types
from pathlib import Path

import pytest
import yaml

from tc_clip.data import VideoDataModule, ZeroShotSuiteDataModule, loaders
from tc_clip.data.loaders import auto_workers, resolve_workers

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(("cpus", "processes", "env", "want"), [
    (2, None, None, 2),  # a 2-core machine, one process: 2, not the 8 that made torch warn
    (64, None, None, 8),  # at most 8 per process
    (16, 4, None, 4),  # the node's CPUs shared among its processes
    (16, None, "4", 4),  # torchrun's LOCAL_WORLD_SIZE
    (2, 4, None, 0),  # more processes than CPUs: load in the main process
])
def test_auto_workers(monkeypatch, cpus, processes, env, want):
    monkeypatch.setattr(loaders, "_cpus", lambda: cpus)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    if env:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", env)
    assert auto_workers(processes) == resolve_workers("auto", processes) == want


def test_data_module_sizes_its_loaders_to_the_trainer_and_uses_an_int_as_given(monkeypatch):
    monkeypatch.setattr(loaders, "_cpus", lambda: 6)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    dm = VideoDataModule()
    assert dm.num_workers == "auto" and dm.loader_options().num_workers == 6
    dm.trainer = types.SimpleNamespace(num_devices=3)  # 3 processes on this node
    assert dm.loader_options().num_workers == 2
    assert VideoDataModule(num_workers=5).loader_options().num_workers == 5  # an int as given, even above the CPUs
    assert ZeroShotSuiteDataModule(hmdb51=VideoDataModule()).num_workers == "auto"
    with pytest.raises(ValueError, match="num_workers must be a count >= 0 or 'auto', got 'many'"):
        VideoDataModule(num_workers="many")


def test_configs_ask_for_auto_and_auto_never_exceeds_this_machine():
    fixed = {p.name: w for p in sorted(CONFIGS.glob("*.yaml"))
             if (w := ((yaml.safe_load(p.read_text()) or {}).get("data") or {}).get("init_args", {}).get("num_workers"))
             not in (None, "auto") and p.name != "demo.yaml"}
    assert not fixed  # main: every protocol config fixed 8 workers
    assert 0 < resolve_workers("auto") <= min(8, len(os.sched_getaffinity(0)))
