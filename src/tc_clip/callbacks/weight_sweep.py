"""The WiSE-FT ratio sweep (SPEC §6, the paper's Fig. 8) as a Lightning callback: :class:`WeightSpaceSweep`
evaluates every ratio after Lightning's own test (or validate) loop, with
:func:`tc_clip.lightning.evaluation.sweep`, and writes the sweep files and the trade-off plot
(:mod:`tc_clip.results.sweeps`, :mod:`tc_clip.results.plots`). CLIP's weights as for
:class:`~tc_clip.callbacks.WeightSpaceEnsemble`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from tc_clip.callbacks.weight_ensemble import WeightSpaceEnsemble, clip_state_for, stage_list
from tc_clip.data import EvalSetInfo
from tc_clip.errors import ConfigError, MissingFileError
from tc_clip.lightning.evaluation import sweep
from tc_clip.model import wise
from tc_clip.results.plots import plot_tradeoff
from tc_clip.results.records import STAGE_PREFIX, EvalSetResult
from tc_clip.results.summary import summarize
from tc_clip.results.sweeps import (
    TradeoffPoint,
    check_targets,
    default_targets,
    known_names,
    no_finetune_set,
    read_points_csv,
    tradeoff_points,
    write_sweep_csv,
    write_sweep_json,
)

DEFAULT_ALPHAS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


class WeightSpaceSweep(Callback):
    """Evaluate every ensembling ratio on the run's evaluation sets, at the end of ``test`` (and/or of a
    ``trainer.validate`` run); write a CSV, a JSON and the trade-off plot; log per-ratio metrics.

    How: after Lightning's own test loop has finished (``on_test_end``), the callback runs the model over
    the same test dataloaders (same batches, devices, DDP samplers, ``limit_test_batches`` and precision
    context) once per ratio, with the module's evaluation recipe (:func:`tc_clip.lightning.evaluation.evaluate`:
    per-set vocabulary, ``eval_scores``, deduplicating accuracy), swapping the ensembled weights in and
    restoring the fine-tuned ones afterwards. Lightning's regular ``test/...`` metrics are those of the
    weights as loaded (α = 1). Nothing of the trainer's loops is re-entered.

    Args:
        alphas: the ratios, each in [0, 1] (default 0, 0.1, ..., 1).
        clip_weights: CLIP's weights (file or hub tag); ``None`` uses the module's ``pretrained``.
        output_dir: where ``wise_sweep_<stage>.{csv,json,png}`` go; ``None`` → ``<log dir>/wise_sweep``.
        finetune_set: evaluation set or group of the y axis (e.g. ``"k400/val"``); ``None`` → the first
            that is not a zero-shot benchmark (HMDB-51, UCF-101, K-600): none in the suite, so no plot.
        zero_shot_sets: sets or groups averaged for the x axis (a group counts once, as the mean of its
            splits: ``["hmdb51", "ucf101", "k600"]``), or ``{label: [set, ...]}``; ``None`` → all others.
        baseline_csv: a second run drawn on the same axes, e.g. a ViFi-CLIP sweep: a CSV written by this
            callback, or one with columns ``zero_shot_top1, finetune_top1[, alpha]``.
        baseline_label: its legend entry; ``label``: this run's legend entry.
        stages: ``"test"`` and/or ``"validate"`` (only ``trainer.validate``, never inside ``fit``).
        log_prefix: logged as ``<log_prefix>/<stage prefix>/<set>/top1`` etc. with ``step = round(100·α)``,
            plus ``.../finetune_top1`` and ``.../zero_shot_top1`` when available.

    A run that holds only zero-shot targets (or only the fine-tuning set) writes its CSV / JSON and no
    plot; ``tc-clip report`` combines the CSVs of several runs into one plot. Ratios, names of sets
    and CLIP shapes are checked in ``setup``, before any evaluation. Files are written by rank 0.
    """

    def __init__(
        self,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        clip_weights: str | None = None,
        output_dir: str | None = None,
        finetune_set: str | None = None,
        zero_shot_sets: list[str] | dict[str, list[str]] | None = None,
        baseline_csv: str | None = None,
        baseline_label: str = "baseline",
        label: str = "TC-CLIP",
        stages: Sequence[str] = ("test",),
        log_prefix: str = "wise",
    ) -> None:
        super().__init__()
        self.alphas = wise.check_alphas(alphas)
        self.clip_weights = clip_weights
        self.output_dir = output_dir
        self.finetune_set = finetune_set
        if zero_shot_sets is not None and not isinstance(zero_shot_sets, Mapping):
            zero_shot_sets = list(zero_shot_sets)
            if not zero_shot_sets:
                raise ConfigError("WeightSpaceSweep: zero_shot_sets is empty (use None for 'every other set')")
        self.zero_shot_sets = zero_shot_sets
        self.baseline_csv = baseline_csv
        self.baseline_label = baseline_label
        self.label = label
        self.stages = stage_list(stages, ("test", "validate"), "WeightSpaceSweep")
        self.log_prefix = log_prefix
        self._clip_state: dict | None = None
        self._baseline: list[TradeoffPoint] | None = None
        self.results: dict[str, list[EvalSetResult]] = {}
        self.files: dict[str, dict[str, str]] = {}

    # --- checks before anything runs ---------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage not in self.stages:
            return
        for cb in trainer.callbacks:
            if isinstance(cb, WeightSpaceEnsemble) and stage in cb.stages:
                raise ConfigError(
                    f"WeightSpaceSweep and WeightSpaceEnsemble are both configured for {stage!r}: the sweep "
                    "sets every ratio itself; remove the WeightSpaceEnsemble callback from this run"
                )
        if self._clip_state is None:
            self._clip_state = clip_state_for(pl_module, self.clip_weights, "WeightSpaceSweep")
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "eval_sets"):
            self._check_targets(dm.eval_sets(stage))
        if self.baseline_csv is not None and self._baseline is None:
            if not Path(self.baseline_csv).expanduser().is_file():
                raise MissingFileError(f"WeightSpaceSweep: baseline_csv {self.baseline_csv} not found")
            self._baseline = read_points_csv(Path(self.baseline_csv).expanduser(), self.finetune_set,
                                               self.zero_shot_sets)

    def _check_targets(self, eval_sets) -> None:
        try:
            check_targets(self.finetune_set, self.zero_shot_sets, known_names(eval_sets))
        except ValueError as err:
            raise ConfigError(f"WeightSpaceSweep: {err}") from err

    def _eval_sets(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, n: int) -> list:
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "eval_sets") and dm.eval_sets(stage):
            sets = list(dm.eval_sets(stage))
        else:
            _, model = wise.find_tcclip(pl_module)
            sets = [EvalSetInfo(name=STAGE_PREFIX[stage], class_names=list(model.class_names))]
        if len(sets) != n:
            raise RuntimeError(f"WeightSpaceSweep: {n} {stage} dataloaders but {len(sets)} evaluation sets")
        self._check_targets(sets)
        return sets

    # --- the sweep ---------------------------------------------------------------------------------------
    def on_test_end(self, trainer, pl_module):
        if "test" in self.stages:
            self._run(trainer, pl_module, "test")

    def on_validation_end(self, trainer, pl_module):
        if "validate" in self.stages and trainer.state.fn == "validate":
            self._run(trainer, pl_module, "validate")

    def _output_dir(self, trainer: L.Trainer) -> Path:
        if self.output_dir is not None:
            return Path(self.output_dir).expanduser()
        folder = trainer.log_dir if trainer.loggers else trainer.default_root_dir  # log_dir: collective
        return Path(folder or ".") / "wise_sweep"

    def _run(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._clip_state is None:
            self._clip_state = clip_state_for(pl_module, self.clip_weights, "WeightSpaceSweep")
        if stage == "test":
            loaders, max_batches = trainer.test_dataloaders, trainer.num_test_batches
            context = trainer.precision_plugin.test_step_context
        else:
            loaders, max_batches = trainer.val_dataloaders, trainer.num_val_batches
            context = trainer.precision_plugin.val_step_context
        loaders = list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
        sets = self._eval_sets(trainer, pl_module, stage, len(loaders))
        out_dir = self._output_dir(trainer)
        rank_zero_info(f"WeightSpaceSweep: {stage} at alpha = {', '.join(f'{a:g}' for a in self.alphas)}")

        def batch_to_device(batch, idx):
            return trainer.strategy.batch_to_device(batch, dataloader_idx=idx)

        def log(alpha, results):
            self._log(trainer, stage, alpha, results)

        rows = sweep(pl_module, loaders, sets, self._clip_state, self.alphas, on_result=log, stage=stage,
                       batch_to_device=batch_to_device, max_batches=max_batches, context=context)
        self.results[stage] = rows
        if not trainer.is_global_zero:
            return
        base = out_dir / f"wise_sweep_{stage}"
        files = {"csv": str(base.with_suffix(".csv")), "json": str(base.with_suffix(".json"))}
        write_sweep_csv(files["csv"], rows)
        write_sweep_json(files["json"], rows, self.finetune_set, self.zero_shot_sets,
                           extra={"stage": stage, "label": self.label})
        points = tradeoff_points(rows, self.finetune_set, self.zero_shot_sets)
        if points:
            baselines = {self.baseline_label: self._baseline} if self._baseline else None
            ft = self.finetune_set or default_targets(rows)[0]
            files["png"] = plot_tradeoff(points, base.with_suffix(".png"), label=self.label,
                                           baselines=baselines, finetune_label=str(ft))
        else:
            why = (None if self.finetune_set else no_finetune_set(rows)) or (
                "no trade-off plot (this run lacks a fine-tuning set or a zero-shot set)")
            rank_zero_warn(f"WeightSpaceSweep: {why}; combine the CSVs of several runs with: "
                           f"tc-clip report {files['csv']} ...")
        self.files[stage] = files
        rank_zero_info(f"WeightSpaceSweep: wrote {', '.join(files.values())}")

    def _log(self, trainer: L.Trainer, stage: str, alpha: float, results: list[EvalSetResult]) -> None:
        if not trainer.loggers or not results:
            return
        prefix = f"{self.log_prefix}/{STAGE_PREFIX[stage]}"
        metrics: dict[str, float] = {f"{self.log_prefix}/alpha": alpha}
        for r in results:
            metrics[f"{prefix}/{r.name}/top1"] = r.top1
            metrics[f"{prefix}/{r.name}/top5"] = r.top5
        if all(r.top1 == r.top1 for r in results):  # no NaN
            for key, value in summarize(results).items():
                metrics[f"{prefix}/{key}"] = value
        points = tradeoff_points(results, self.finetune_set, self.zero_shot_sets)
        if points:
            metrics[f"{prefix}/finetune_top1"] = points[0].finetune_top1
            metrics[f"{prefix}/zero_shot_top1"] = points[0].zero_shot_top1
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=int(round(100 * alpha)))
            logger.save()
