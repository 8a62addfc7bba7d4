"""The protocol summaries (:mod:`tc_clip.results.summary`): mean ± population std over splits, base/novel/HM,
the few-shot average, and the table printed at the end of an evaluation."""

from __future__ import annotations

import math

import pytest

from tc_clip.results import (
    EvalSetResult,
    base_novel_summary,
    few_shot_average,
    format_table,
    group_mean_std,
    harmonic_mean,
    mean_std,
    primary_top1,
    summarize,
)


def test_mean_std_is_population_std():
    mean, std = mean_std([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6)
    assert std == pytest.approx(math.sqrt(((0.1**2) * 2) / 3))
    assert mean_std([0.3]) == (0.3, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_harmonic_mean_known_values():
    assert harmonic_mean(0.8, 0.6) == pytest.approx(2 * 0.8 * 0.6 / 1.4)
    assert harmonic_mean(0.5, 0.5) == pytest.approx(0.5)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(1.0, 0.0) == 0.0
    assert harmonic_mean(80.0, 60.0) == pytest.approx(68.5714, abs=1e-4)  # unit-free (percentages)


def _zero_shot_results():
    return [
        EvalSetResult("hmdb_split1", 0.50, 0.80, group="hmdb51"),
        EvalSetResult("hmdb_split2", 0.56, 0.82, group="hmdb51"),
        EvalSetResult("hmdb_split3", 0.56, 0.84, group="hmdb51"),
        EvalSetResult("ucf_split1", 0.80, 0.95, group="ucf101"),
        EvalSetResult("ucf_split2", 0.84, 0.97, group="ucf101"),
        EvalSetResult("ucf_split3", 0.82, 0.96, group="ucf101"),
    ]


def test_zero_shot_mean_std_per_group():
    out = group_mean_std(_zero_shot_results())
    assert set(out) == {"hmdb51", "ucf101"}
    assert out["hmdb51"][0] == pytest.approx(0.54)
    assert out["hmdb51"][1] == pytest.approx(math.sqrt((0.04**2 + 0.02**2 + 0.02**2) / 3))
    assert out["ucf101"] == (pytest.approx(0.82), pytest.approx(math.sqrt((0.02**2 + 0.02**2) / 3)))
    flat = summarize(_zero_shot_results())
    assert flat["hmdb51/top1_mean"] == pytest.approx(0.54)
    assert flat["ucf101/top5_mean"] == pytest.approx(0.96)
    # no unnamed alias, and no mean +- std of a single set
    assert "top1" not in flat
    assert summarize([EvalSetResult("hmdb51/split1", 0.5, 0.8, group="hmdb51")]) == {}


def test_base_to_novel_summary():
    results = [
        EvalSetResult("k400_base", 0.789, group="k400", role="base"),
        EvalSetResult("k400_novel", 0.636, group="k400", role="novel"),
        EvalSetResult("hmdb_base", 0.7, group="hmdb", role="base"),
        EvalSetResult("hmdb_novel", 0.5, group="hmdb", role="novel"),
    ]
    out = base_novel_summary(results)
    assert out["k400"]["hm"] == pytest.approx(2 * 0.789 * 0.636 / (0.789 + 0.636))
    assert out["hmdb"] == {"base": 0.7, "novel": 0.5, "hm": pytest.approx(0.7 * 0.5 * 2 / 1.2)}
    flat = summarize(results)
    assert flat["hmdb/hm"] == pytest.approx(0.583333, abs=1e-6)
    assert set(flat) == {f"{g}/{k}" for g in ("k400", "hmdb") for k in ("base", "novel", "hm")}
    # base/novel sets stay out of the zero-shot mean ± std
    assert group_mean_std(results) == {}
    with pytest.raises(ValueError, match="two 'base'"):
        base_novel_summary(results + [EvalSetResult("x", 0.1, group="k400", role="base")])


def test_few_shot_average_and_primary():
    assert few_shot_average({2: 0.4, 4: 0.5, 8: 0.6, 16: 0.7}) == pytest.approx(0.55)
    # a single set: its own top-1
    assert primary_top1([EvalSetResult("val", 0.3)]) == 0.3
    # ungrouped sets count one each
    assert primary_top1([EvalSetResult("a", 0.2), EvalSetResult("b", 0.4)]) == pytest.approx(0.3)


def test_format_table_has_a_row_per_set_with_its_counts_and_the_zero_shot_row():
    results = _zero_shot_results()[:3] + [EvalSetResult("odd", 0.25, None, videos=4, skipped=1)]
    results = [r if r.videos else EvalSetResult(r.name, r.top1, r.top5, r.group, videos=10) for r in results]
    text = format_table("test", results, summarize(results))
    lines = text.splitlines()
    assert lines[0] == "test results"
    assert lines[2].split() == ["hmdb_split1", "50.00", "80.00", "10", "0"]
    assert lines[5].split() == ["odd", "25.00", "-", "4", "1"]
    assert lines[-1].startswith("zero-shot top-1 (mean ± std over splits): hmdb51 54.00 ± ")
