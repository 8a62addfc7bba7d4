"""Weight-space ensembling (WiSE-FT, SPEC §6) at evaluation: :class:`WeightSpaceEnsemble` evaluates with
``(1 − α)·θ_CLIP + α·θ_finetuned`` (the arithmetic is :mod:`tc_clip.model.wise`).

It works on the :class:`~tc_clip.model.TCCLIP` inside the LightningModule (``pl_module.model``) and takes
CLIP's weights from ``clip_weights`` or, by default, from the module's own ``model.pretrained`` (the CLIP
file the run was built from; with ``model_name`` for an open_clip hub tag). Under DDP every process loads
the same CLIP file and ensembles its own copy of the (identical) weights with the same deterministic
arithmetic, so all ranks hold bit-identical ensembled weights without communication. Sharded strategies
(FSDP, DeepSpeed stage 3) are not supported: their parameters do not have CLIP's shapes, which is
reported as a shape error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from tc_clip.errors import ConfigError
from tc_clip.model import wise


def stage_list(stages: str | Sequence[str], allowed: tuple[str, ...], owner: str) -> tuple[str, ...]:
    """``stages`` as a tuple, or a ``ConfigError`` (a ``ValueError``) naming ``owner`` unless it is a non-empty
    subset of ``allowed``."""
    stages = (stages,) if isinstance(stages, str) else tuple(stages)
    bad = [s for s in stages if s not in allowed]
    if bad or not stages:
        raise ConfigError(f"{owner}: stages must be a non-empty subset of {allowed}, got {list(stages)}")
    return stages


def clip_state_for(pl_module: L.LightningModule, clip_weights: Any, owner: str) -> dict:
    """CLIP's weights for the module's TCCLIP, checked against it (shapes) - raises before evaluation."""
    _, model = wise.find_tcclip(pl_module)
    hparams = getattr(pl_module, "hparams", {}) or {}
    source = clip_weights if clip_weights is not None else hparams.get("pretrained")
    if source is None:
        raise ConfigError(
            f"{owner}: no CLIP weights to ensemble with. Set clip_weights to the CLIP file the model was "
            "fine-tuned from (e.g. /weights/ViT-B-16.pt), or build the module with model.pretrained."
        )
    try:
        return wise.load_clip_state(source, model=model, model_name=hparams.get("model_name"))
    except ValueError as err:
        raise ConfigError(f"{owner}: CLIP weights {source!r}: {err}") from err


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
    :func:`tc_clip.model.wise.save_ensembled`. CLIP's weights are loaded and their shapes checked in
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
        self.alpha = wise.check_alpha(alpha)
        self.clip_weights = clip_weights
        self.stages = stage_list(stages, ("test", "validate", "predict"), "WeightSpaceEnsemble")
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
            self._prefix = wise.find_tcclip(pl_module)[0]
            if self._clip_state is None:
                self._clip_state = clip_state_for(pl_module, self.clip_weights, "WeightSpaceEnsemble")

    # --- swap / restore -----------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while the model holds ensembled weights."""
        return self._original is not None

    def _swap(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self._wanted(trainer, stage) or self.active:
            return
        if self._clip_state is None:
            self._clip_state = clip_state_for(pl_module, self.clip_weights, "WeightSpaceEnsemble")
        self._prefix, model = wise.find_tcclip(pl_module)
        self._original = wise.interpolate(model, self._clip_state, self.alpha)
        rank_zero_info(f"WeightSpaceEnsemble: {stage} with alpha={self.alpha:g} "
                       f"({len(self._original)} CLIP-shared tensors ensembled)")

    def _restore(self, pl_module: L.LightningModule) -> None:
        if self._original is None:
            return
        _, model = wise.find_tcclip(pl_module)
        original, self._original = self._original, None
        wise.restore(model, original)

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
