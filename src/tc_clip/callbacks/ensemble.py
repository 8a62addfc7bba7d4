"""Weight-space ensembling (WiSE-FT, SPEC §6) as Lightning callbacks: one ratio for evaluation
(:class:`WeightSpaceEnsemble`) and a sweep over ratios with the trade-off plot (:class:`WeightSpaceSweep`).

Both work on the :class:`~tc_clip.model.TCCLIP` inside the LightningModule (``pl_module.model``) and take
CLIP's weights from ``clip_weights`` or, by default, from the module's own ``model.pretrained`` (the CLIP
file the run was built from; with ``model_name`` for an open_clip hub tag). The arithmetic is in
:mod:`tc_clip.ensemble`, the files and plots in :mod:`tc_clip.results`; :func:`evaluate` and
:func:`sweep` run a model at given ratios outside Lightning too. Under DDP every process loads the
same CLIP file and ensembles its own copy of the (identical) weights with the same deterministic
arithmetic, so all ranks hold bit-identical ensembled weights without communication. Sharded
strategies (FSDP, DeepSpeed stage 3) are not supported: their parameters do not have CLIP's shapes,
which is reported as a shape error.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from tc_clip import ensemble as E
from tc_clip import results as R
from tc_clip.results import SetResult

_STAGE_PREFIX = {"validate": "val", "test": "test", "predict": "predict"}
DEFAULT_ALPHAS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


# ------------------------------------------------------------------------ evaluation at a ratio
def _eval_set_fields(info: Any, position: int, default_name: str) -> dict[str, Any]:
    return {
        "name": str(getattr(info, "name", None) or (default_name if position == 0 else f"set{position}")),
        "class_names": list(info.class_names),
        "group": getattr(info, "group", None),
        "role": getattr(info, "role", None),
    }


def _scores_fn(module: nn.Module) -> Callable[[Tensor], Tensor]:
    fn = getattr(module, "eval_scores", None)
    if callable(fn):
        return fn
    from tc_clip.lightning.metrics import aggregate_views

    def scores(video: Tensor) -> Tensor:  # a bare TCCLIP: the module's recipe (softmax per view, summed)
        if video.dim() == 5:
            video = video.unsqueeze(1)
        b, v = video.shape[:2]
        return aggregate_views(module(video.flatten(0, 1)).view(b, v, -1))

    return scores


def evaluate(
    module: nn.Module,
    dataloaders: Sequence[Iterable],
    eval_sets: Sequence[Any],
    alpha: float = 1.0,
    stage: str = "test",
    batch_to_device: Callable[[Any, int], Any] | None = None,
    max_batches: Sequence[int | float] | None = None,
    context: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> list[SetResult]:
    """Evaluate ``module`` as it is on every dataloader, with the recipe of ``TCCLIPModule``'s test step:
    the set's vocabulary, ``module.eval_scores`` (softmax per view, summed) and the deduplicating
    :class:`~tc_clip.lightning.EvalSetAccuracy` (exact under DDP: ``compute()`` gathers every process).

    ``eval_sets``: one entry per dataloader with ``name``, ``class_names`` and optionally ``group`` /
    ``role`` (the data module's ``eval_sets(stage)``). ``alpha`` only labels the results. A bare
    ``TCCLIP`` works too. ``batch_to_device(batch, dataloader_idx)`` defaults to moving tensors to the
    module's device and normalising ``uint8`` clips (:func:`~tc_clip.data.gpu_augment.device_transform`);
    ``max_batches`` limits each dataloader; ``context`` wraps every forward (autocast).
    """
    from tc_clip.lightning.metrics import EvalSetAccuracy

    if len(dataloaders) != len(eval_sets):
        raise ValueError(f"{len(dataloaders)} dataloaders but {len(eval_sets)} evaluation sets")
    _, model = E.find_tcclip(module)
    scores_fn = _scores_fn(module)
    device = next(module.parameters()).device
    if batch_to_device is None:
        from tc_clip.data.gpu_augment import device_transform

        def batch_to_device(batch, _idx):  # the data modules hand over uint8 clips: normalise them here
            return device_transform({k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()})
    context = context or contextlib.nullcontext
    was_training = module.training
    module.eval()
    results = []
    try:
        for i, (loader, info) in enumerate(zip(dataloaders, eval_sets, strict=True)):
            fields = _eval_set_fields(info, i, {"validate": "val"}.get(stage, stage))
            if list(model.class_names) != fields["class_names"]:
                model.set_class_names(fields["class_names"])
            metric = EvalSetAccuracy(num_classes=len(fields["class_names"])).to(device)
            limit = max_batches[i] if max_batches is not None else math.inf
            for b, batch in enumerate(loader):
                if b >= limit:
                    break
                batch = batch_to_device(batch, i)
                with torch.inference_mode(), context():
                    scores = scores_fn(batch["video"])
                metric.update(scores, batch["label"], batch["index"], batch.get("skipped"))
            if not metric.update_called:
                continue
            out = metric.compute()
            results.append(SetResult(
                alpha=alpha, eval_set=fields["name"], top1=float(out["top1"]), top5=float(out["top5"]),
                videos=int(out["count"]), skipped=int(out["skipped"]), group=fields["group"],
                role=fields["role"], stage=stage,
            ))
    finally:
        module.train(was_training)
    return results


def sweep(
    module: nn.Module,
    dataloaders: Sequence[Iterable],
    eval_sets: Sequence[Any],
    clip_state: Mapping[str, Tensor],
    alphas: Sequence[float],
    on_result: Callable[[float, list[SetResult]], None] | None = None,
    **evaluate_kwargs: Any,
) -> list[SetResult]:
    """Evaluate ``module`` at every ratio of ``alphas`` (see :func:`evaluate`); the fine-tuned weights
    are restored afterwards, also on error. Ratios and CLIP shapes are checked before any evaluation.
    ``on_result(alpha, results)`` is called after every ratio (logging)."""
    alphas = E.check_alphas(alphas)
    _, model = E.find_tcclip(module)
    clip_state = E.check_clip_state(model, clip_state)
    rows: list[SetResult] = []
    for alpha in alphas:
        with E.ensembled(model, clip_state, alpha):
            results = evaluate(module, dataloaders, eval_sets, alpha=alpha, **evaluate_kwargs)
        rows.extend(results)
        if on_result is not None:
            on_result(alpha, results)
    return rows


# --------------------------------------------------------------------------------------- callbacks
def _stage_list(stages: str | Sequence[str], allowed: tuple[str, ...], owner: str) -> tuple[str, ...]:
    stages = (stages,) if isinstance(stages, str) else tuple(stages)
    bad = [s for s in stages if s not in allowed]
    if bad or not stages:
        raise ValueError(f"{owner}: stages must be a non-empty subset of {allowed}, got {list(stages)}")
    return stages


def _clip_state_for(pl_module: L.LightningModule, clip_weights: Any, owner: str) -> dict:
    """CLIP's weights for the module's TCCLIP, checked against it (shapes) - raises before evaluation."""
    _, model = E.find_tcclip(pl_module)
    hparams = getattr(pl_module, "hparams", {}) or {}
    source = clip_weights if clip_weights is not None else hparams.get("pretrained")
    if source is None:
        raise ValueError(
            f"{owner}: no CLIP weights to ensemble with. Set clip_weights to the CLIP file the model was "
            "fine-tuned from (e.g. /weights/ViT-B-16.pt), or build the module with model.pretrained."
        )
    try:
        return E.load_clip_state(source, model=model, model_name=hparams.get("model_name"))
    except ValueError as err:
        raise ValueError(f"{owner}: CLIP weights {source!r}: {err}") from err


class WeightSpaceEnsemble(Callback):
    """Evaluate with ``(1 − α)·θ_CLIP + α·θ_finetuned`` (the fine-tuned value for parameters CLIP lacks).

    The ensembled weights are swapped in on ``on_{stage}_start`` and the fine-tuned weights restored on
    ``on_{stage}_end`` (and on an exception), for each stage of ``stages`` (``"test"``, ``"validate"``,
    ``"predict"``). The paper's zero-shot numbers use ``alpha=0.7``.

    Args:
        alpha: the ratio α in [0, 1] (1 = the fine-tuned model, 0 = CLIP plus TC-CLIP's new parts).
        clip_weights: CLIP's weights (a local file such as OpenAI's ``ViT-B-16.pt``, or an open_clip hub
            tag); ``None`` uses the module's ``pretrained`` (the CLIP the run started from).
        stages: when to ensemble.
        during_fit: with ``"validate"`` in ``stages``, also ensemble the validation runs inside ``fit``
            (their metrics, and therefore best-checkpoint selection, then see the ensembled model).
            Off by default: only ``trainer.validate`` is ensembled.

    Checkpoints never hold ensembled weights: the weights are restored before Lightning's
    ModelCheckpoint runs, and any checkpoint written while the ensemble is active gets the fine-tuned
    values (``on_save_checkpoint``). To write an ensembled model on purpose use
    :func:`tc_clip.ensemble.save_ensembled`. CLIP's weights are loaded and their shapes checked in
    ``setup``, before any evaluation.
    """

    def __init__(
        self,
        alpha: float = 0.7,
        clip_weights: str | None = None,
        stages: Sequence[str] = ("test",),
        during_fit: bool = False,
    ) -> None:
        super().__init__()
        self.alpha = E.check_alpha(alpha)
        self.clip_weights = clip_weights
        self.stages = _stage_list(stages, ("test", "validate", "predict"), "WeightSpaceEnsemble")
        self.during_fit = bool(during_fit)
        self._clip_state: dict | None = None
        self._original: dict | None = None
        self._prefix = "model."

    # --- when ----------------------------------------------------------------------------------
    def _wanted(self, trainer: L.Trainer, stage: str) -> bool:
        if stage not in self.stages:
            return False
        if stage == "validate" and trainer.state.fn == "fit":
            return self.during_fit
        return True

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        relevant = {"fit": "validate"}.get(stage, stage)
        if relevant in self.stages and (stage != "fit" or self.during_fit):
            self._prefix = E.find_tcclip(pl_module)[0]
            if self._clip_state is None:
                self._clip_state = _clip_state_for(pl_module, self.clip_weights, "WeightSpaceEnsemble")

    # --- swap / restore -----------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while the model holds ensembled weights."""
        return self._original is not None

    def _swap(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self._wanted(trainer, stage) or self.active:
            return
        if self._clip_state is None:
            self._clip_state = _clip_state_for(pl_module, self.clip_weights, "WeightSpaceEnsemble")
        self._prefix, model = E.find_tcclip(pl_module)
        self._original = E.interpolate(model, self._clip_state, self.alpha)
        rank_zero_info(f"WeightSpaceEnsemble: {stage} with alpha={self.alpha:g} "
                       f"({len(self._original)} CLIP-shared tensors ensembled)")

    def _restore(self, pl_module: L.LightningModule) -> None:
        if self._original is None:
            return
        _, model = E.find_tcclip(pl_module)
        original, self._original = self._original, None
        E.restore(model, original)

    def on_validation_start(self, trainer, pl_module):
        self._swap(trainer, pl_module, "validate")

    def on_validation_end(self, trainer, pl_module):
        self._restore(pl_module)

    def on_test_start(self, trainer, pl_module):
        self._swap(trainer, pl_module, "test")

    def on_test_end(self, trainer, pl_module):
        self._restore(pl_module)

    def on_predict_start(self, trainer, pl_module):
        self._swap(trainer, pl_module, "predict")

    def on_predict_end(self, trainer, pl_module):
        self._restore(pl_module)

    def on_exception(self, trainer, pl_module, exception):
        self._restore(pl_module)

    def teardown(self, trainer, pl_module, stage):
        self._restore(pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """A checkpoint written while the ensemble is active gets the fine-tuned weights."""
        if self._original is None or "state_dict" not in checkpoint:
            return
        state = checkpoint["state_dict"]
        for key, value in self._original.items():
            full = self._prefix + key
            if full in state:
                state[full] = value.detach().clone()


class WeightSpaceSweep(Callback):
    """Evaluate every ensembling ratio on the run's evaluation sets, at the end of ``test`` (and/or of a
    ``trainer.validate`` run); write a CSV, a JSON and the trade-off plot; log per-ratio metrics.

    How: after Lightning's own test loop has finished (``on_test_end``), the callback runs the model over
    the same test dataloaders (same batches, devices, DDP samplers, ``limit_test_batches`` and precision
    context) once per ratio, with the module's evaluation recipe (:func:`tc_clip.ensemble.evaluate`:
    per-set vocabulary, ``eval_scores``, deduplicating accuracy), swapping the ensembled weights in and
    restoring the fine-tuned ones afterwards. Lightning's regular ``test/...`` metrics are those of the
    weights as loaded (α = 1). Nothing of the trainer's loops is re-entered.

    Args:
        alphas: the ratios, each in [0, 1] (default 0, 0.1, ..., 1).
        clip_weights: CLIP's weights (file or hub tag); ``None`` uses the module's ``pretrained``.
        output_dir: where ``wise_sweep_<stage>.{csv,json,png}`` go; ``None`` → ``<log dir>/wise_sweep``.
        finetune_set: evaluation set or group of the y axis (e.g. ``"k400_val"``); ``None`` → the first.
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
        self.alphas = E.check_alphas(alphas)
        self.clip_weights = clip_weights
        self.output_dir = output_dir
        self.finetune_set = finetune_set
        if zero_shot_sets is not None and not isinstance(zero_shot_sets, Mapping):
            zero_shot_sets = list(zero_shot_sets)
            if not zero_shot_sets:
                raise ValueError("WeightSpaceSweep: zero_shot_sets is empty (use None for 'every other set')")
        self.zero_shot_sets = zero_shot_sets
        self.baseline_csv = baseline_csv
        self.baseline_label = baseline_label
        self.label = label
        self.stages = _stage_list(stages, ("test", "validate"), "WeightSpaceSweep")
        self.log_prefix = log_prefix
        self._clip_state: dict | None = None
        self._baseline: list[R.TradeoffPoint] | None = None
        self.results: dict[str, list[SetResult]] = {}
        self.files: dict[str, dict[str, str]] = {}

    # --- checks before anything runs ---------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage not in self.stages:
            return
        for cb in trainer.callbacks:
            if isinstance(cb, WeightSpaceEnsemble) and stage in cb.stages:
                raise ValueError(
                    f"WeightSpaceSweep and WeightSpaceEnsemble are both configured for {stage!r}: the sweep "
                    "sets every ratio itself; remove the WeightSpaceEnsemble callback from this run"
                )
        if self._clip_state is None:
            self._clip_state = _clip_state_for(pl_module, self.clip_weights, "WeightSpaceSweep")
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "eval_sets"):
            self._check_targets(dm.eval_sets(stage))
        if self.baseline_csv is not None and self._baseline is None:
            if not Path(self.baseline_csv).expanduser().is_file():
                raise FileNotFoundError(f"WeightSpaceSweep: baseline_csv {self.baseline_csv} not found")
            self._baseline = R.read_points_csv(Path(self.baseline_csv).expanduser(), self.finetune_set,
                                               self.zero_shot_sets)

    def _check_targets(self, eval_sets) -> None:
        try:
            R.check_targets(self.finetune_set, self.zero_shot_sets, R.known_names(eval_sets))
        except ValueError as err:
            raise ValueError(f"WeightSpaceSweep: {err}") from err

    def _eval_sets(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, n: int) -> list:
        dm = getattr(trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "eval_sets") and dm.eval_sets(stage):
            sets = list(dm.eval_sets(stage))
        else:
            _, model = E.find_tcclip(pl_module)
            sets = [SimpleNamespace(name=_STAGE_PREFIX[stage], class_names=model.class_names, group=None,
                                    role=None)]
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
            self._clip_state = _clip_state_for(pl_module, self.clip_weights, "WeightSpaceSweep")
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
        R.write_sweep_csv(files["csv"], rows)
        R.write_sweep_json(files["json"], rows, self.finetune_set, self.zero_shot_sets,
                           extra={"stage": stage, "label": self.label})
        points = R.tradeoff_points(rows, self.finetune_set, self.zero_shot_sets)
        if points:
            baselines = {self.baseline_label: self._baseline} if self._baseline else None
            ft = self.finetune_set or R.default_targets(rows)[0]
            files["png"] = R.plot_tradeoff(points, base.with_suffix(".png"), label=self.label,
                                           baselines=baselines, finetune_label=str(ft))
        else:
            rank_zero_warn(
                "WeightSpaceSweep: no trade-off plot (this run lacks a fine-tuning set or a zero-shot set); "
                f"combine the CSVs of several runs with: tc-clip report {files['csv']} ..."
            )
        self.files[stage] = files
        rank_zero_info(f"WeightSpaceSweep: wrote {', '.join(files.values())}")

    def _log(self, trainer: L.Trainer, stage: str, alpha: float, results: list[SetResult]) -> None:
        if not trainer.loggers or not results:
            return
        from tc_clip.lightning.summary import EvalSetResult, summarize

        prefix = f"{self.log_prefix}/{_STAGE_PREFIX[stage]}"
        metrics: dict[str, float] = {f"{self.log_prefix}/alpha": alpha}
        for r in results:
            metrics[f"{prefix}/{r.eval_set}/top1"] = r.top1
            metrics[f"{prefix}/{r.eval_set}/top5"] = r.top5
        if all(r.top1 == r.top1 for r in results):  # no NaN
            evals = [EvalSetResult(r.eval_set, r.top1, r.top5, r.group, r.role) for r in results]
            for key, value in summarize(evals).items():
                metrics[f"{prefix}/{key}"] = value
        points = R.tradeoff_points(results, self.finetune_set, self.zero_shot_sets)
        if points:
            metrics[f"{prefix}/finetune_top1"] = points[0].finetune_top1
            metrics[f"{prefix}/zero_shot_top1"] = points[0].zero_shot_top1
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=int(round(100 * alpha)))
            logger.save()


__all__ = ["DEFAULT_ALPHAS", "WeightSpaceEnsemble", "WeightSpaceSweep", "evaluate", "sweep"]
