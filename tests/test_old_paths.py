"""Import paths of the previous release keep working for one release, with a DeprecationWarning that names
the new place; names that did not move warn about nothing."""

from __future__ import annotations

import importlib
import runpy
import warnings

import pytest

MOVED = [
    ("tc_clip.ensemble", "interpolate", "tc_clip.model.wise"),
    ("tc_clip.ensemble", "load_clip_state", "tc_clip.model.wise"),
    ("tc_clip.cli_options", "auto_precision", "tc_clip.cli.options"),
    ("tc_clip.data_commands", "run_data_command", "tc_clip.cli.data_commands"),
    ("tc_clip.lightning.callbacks", "NovelAtBestBase", "tc_clip.callbacks"),
    ("tc_clip.lightning.callbacks", "FitSummary", "tc_clip.callbacks"),
    ("tc_clip.lightning.guards", "NonFiniteGuard", "tc_clip.callbacks"),
    ("tc_clip.lightning.checkpointing", "LastCheckpoint", "tc_clip.callbacks"),
    ("tc_clip.lightning.checkpointing", "SamplerResume", "tc_clip.callbacks"),
    ("tc_clip.lightning.checkpointing", "resolve_ckpt_path", "tc_clip.cli.runs"),
    ("tc_clip.lightning.checkpointing", "CheckpointError", "tc_clip.model"),
    ("tc_clip.lightning.summary", "summarize", "tc_clip.results"),
    ("tc_clip.lightning.summary", "EvalSetResult", "tc_clip.results"),
    ("tc_clip.lightning", "ValidateAtFitEnd", "tc_clip.callbacks"),
    ("tc_clip.lightning", "harmonic_mean", "tc_clip.results"),
    ("tc_clip.callbacks.ensemble", "WeightSpaceEnsemble", "tc_clip.callbacks"),
    ("tc_clip.callbacks.ensemble", "WeightSpaceSweep", "tc_clip.callbacks"),
    ("tc_clip.callbacks.ensemble", "sweep", "tc_clip.lightning.evaluation"),
    ("tc_clip.callbacks.predict_writer", "PredictionWriter", "tc_clip.callbacks"),
    ("tc_clip.callbacks.predict_writer", "read_progress", "tc_clip.callbacks.prediction_writer"),
]


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_an_old_path_warns_and_gives_the_same_object(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to tc_clip\..*; the old path is removed"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)
    assert name in dir(module)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018


def test_results_is_still_the_place_of_its_torch_free_names_and_warns_only_for_what_left():
    import tc_clip.results as R
    from tc_clip.cli import report

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert callable(R.read_eval_records) and callable(R.write_sweep_csv) and callable(R.table_markdown)
    with pytest.warns(DeprecationWarning, match="tc_clip.results.report_main moved to tc_clip.cli.report.main"):
        assert R.report_main is report.main
    with pytest.warns(DeprecationWarning, match="SetResult moved to tc_clip.results.EvalSetResult"):
        row = R.SetResult(0.5, "k400_val", 0.6, 0.9, 10, 1, group="k400")
    assert row == R.EvalSetResult("k400_val", 0.6, 0.9, "k400", None, 10, 1, 0.5, "test")


def test_python_m_tc_clip_results_is_tc_clip_report(capsys):
    with pytest.warns(DeprecationWarning, match="python -m tc_clip.results moved to tc-clip report"):
        with pytest.raises(SystemExit) as exit_:
            runpy.run_module("tc_clip.results", run_name="__main__")
    assert exit_.value.code == 2 and "tc-clip report" in capsys.readouterr().err  # its usage: RUN is required


def test_top_level_names_unchanged():
    import tc_clip
    from tc_clip import TCCLIP, TCCLIPConfig
    from tc_clip.model import TCCLIP as ModelTCCLIP

    assert TCCLIP is ModelTCCLIP and TCCLIPConfig.__name__ == "TCCLIPConfig"
    with pytest.raises(AttributeError):
        tc_clip.nope  # noqa: B018
