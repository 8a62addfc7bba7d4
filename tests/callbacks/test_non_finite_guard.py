"""A NaN/inf loss stops the run with the step, and nothing non-finite is saved (NonFiniteGuard)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from run_helpers import demo_args
from tc_clip.callbacks import NonFiniteError, NonFiniteGuard
from tc_clip.cli import build_cli, main


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo_cache")


def test_nan_loss_stops_with_the_step_and_saves_nothing_non_finite(cache, tmp_path, capsys):
    root = tmp_path / "runs"
    args = ["fit", *demo_args(cache, root, "--model.lr", "1e12", "--model.warmup_epochs", "0",
                              "--last_every_n_steps", "1")]
    assert main(args) == 1  # the console gets one clear line, no traceback
    err = capsys.readouterr().err
    assert re.search(r"tc-clip: error: the training loss is (nan|inf) at global step \d+ \(epoch \d+, batch \d+\)", err)
    assert "lr" in err and "Traceback" not in err
    with pytest.raises(NonFiniteError, match=r"global step \d+"):  # from Python, the exception itself
        build_cli(args)
    saved = list(root.rglob("*.ckpt"))
    for path in saved:  # every checkpoint written before the stop holds finite weights
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()), path


def test_guard_refuses_to_save_non_finite_weights():
    class Trainer:
        global_step, current_epoch = 7, 1

        class fit_loop:  # noqa: N801
            class epoch_loop:  # noqa: N801
                class batch_progress:  # noqa: N801
                    class current:  # noqa: N801
                        ready = 3

    guard = NonFiniteGuard()
    guard.on_save_checkpoint(Trainer(), None, {"state_dict": {"w": torch.ones(2), "n": torch.arange(3)}})
    with pytest.raises(NonFiniteError, match=r"non-finite weights at global step 7 .*: w"):
        guard.on_save_checkpoint(Trainer(), None, {"state_dict": {"w": torch.tensor([1.0, float("nan")])}})
    with pytest.raises(NonFiniteError, match="loss is inf at global step 7"):
        guard.on_before_backward(Trainer(), None, torch.tensor(float("inf")))


def test_non_finite_tensors_names_exactly_the_bad_ones():
    """One fused norm per dtype decides; a norm that overflows on finite values names nothing."""
    from tc_clip.callbacks.non_finite_guard import non_finite_tensors

    tensors = {f"w{i}": torch.randn(5, 3) for i in range(6)} | {"half": torch.ones(4, dtype=torch.bfloat16),
                                                                 "ids": torch.arange(3), "empty": torch.zeros(0)}
    assert non_finite_tensors(tensors) == []
    tensors["w1"][2, 1] = float("nan")
    tensors["w4"][0, 0] = float("-inf")
    tensors["w2"][1, 1] = 3e38  # finite, but its norm overflows float32
    tensors["half"][3] = float("inf")
    assert non_finite_tensors(tensors) == ["w1", "w4", "half"]
    assert non_finite_tensors(tensors, limit=1) == ["w1"]
