"""The LightningModule: TC-CLIP plus the training and evaluation recipe of SPEC section 5."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from tc_clip.data import EvalSetInfo
from tc_clip.data.dataset import DECODERS
from tc_clip.data.sampler import step_rng
from tc_clip.errors import UserError
from tc_clip.lightning.folder import folder_model
from tc_clip.lightning.metrics import EvalSetAccuracy, video_scores
from tc_clip.lightning.mixing import VideoMixup, soft_target_cross_entropy
from tc_clip.lightning.schedule import SCHEDULE_SHAPES, ScheduleShape, warmup_cosine_scheduler
from tc_clip.model.config import TCCLIPConfig
from tc_clip.results.records import STAGE_PREFIX, EvalSetResult, append_eval_record, eval_record
from tc_clip.results.summary import format_table, summarize


class TooFewBatchesError(UserError, RuntimeError):
    """An epoch too short for one complete global batch (a training limit, or a small training set)."""


class TCCLIPModule(L.LightningModule):
    """TC-CLIP (or its ViFi-CLIP baseline) with the paper's training and evaluation recipe.

    Model
        model_name: open_clip architecture (``"ViT-B-16"``) or ``"tiny"`` (a small random CLIP, no file).
        pretrained: local path to CLIP weights (OpenAI ``ViT-B-16.pt`` or an open_clip state dict);
            ``None`` leaves CLIP random (only sensible with ``"tiny"`` or ``release_checkpoint``).
        release_checkpoint: a ``.pth`` released by the TC-CLIP authors; the CLIP weights of
            ``pretrained`` provide what the file lacks (token embedding).
        config: the research switches (:class:`~tc_clip.model.config.TCCLIPConfig`).
        class_names: vocabulary used when the data module provides none (e.g. ``predict`` on a folder of
            videos without a labels file); a checkpoint's training vocabulary is used otherwise.
        input_size: frame size the data delivers (``tc-clip`` links it to ``data.input_size``); a size the
            architecture cannot take is an error when the module is built, not at the first batch.
        model_folder: a model folder written by ``tc-clip export`` / ``TCCLIP.save_pretrained``, or a Hub repo
            id: the model (architecture, switches, vocabulary, weights) comes from it, so ``model_name`` is
            ignored, ``pretrained`` / ``release_checkpoint`` are refused, and so is a ``config`` switch set to
            neither its default nor the folder's value. ``config.num_frames`` (linked to ``data.num_frames``)
            is the data's: TC-CLIP runs on any frame count, except with a joint positional table, where a
            count other than the folder's is refused; ``config.grad_checkpointing`` is taken as given.
    Optimisation (AdamW, per-step linear warm-up from 0 and cosine, :mod:`tc_clip.lightning.schedule`)
        lr, lr_min: peak learning rate of the base group and the floor of the cosine (absolute).
        warmup_epochs: warm-up length in epochs (may be fractional); converted to optimiser steps.
        lr_schedule: ``"release"`` (one cosine over the whole run, warm-up included: the paper's) or
            ``"warmup_then_cosine"`` (a cosine that starts at the peak after the warm-up).
        Only complete global batches step the optimiser: the micro-batches left over at the end of an epoch
        (fewer than ``accumulate_grad_batches``) are dropped, as in the release.
        weight_decay, betas, eps: AdamW's; the decay applies to every parameter.
        prompt_lr_mult: learning-rate multiplier of the prompt vectors and the VP blocks.
    Loss
        label_smoothing, mixup_alpha, cutmix_alpha, mix_switch_prob: soft-target cross-entropy on
        Mixup/CutMix targets; set both alphas to 0 to turn mixing off.
    Evaluation / prediction
        predict_top_k: how many classes ``predict`` reports per video.
        views_per_forward: evaluate at most this many views of a batch per forward pass (memory);
            ``None`` runs all ``B·V`` clips at once.
    Speed
        compile: run the model through ``torch.compile`` (inductor) in training, evaluation and
            prediction; weights, checkpoints and results are those of the eager model. A new input shape
            recompiles (README, "Precision and compile").
    """

    def __init__(
        self,
        model_name: str = "ViT-B-16",
        pretrained: str | None = None,
        release_checkpoint: str | None = None,
        config: TCCLIPConfig = TCCLIPConfig(),  # noqa: B008 - copied below, never mutated
        class_names: list[str] | None = None,
        input_size: int | None = None,
        lr: float = 2e-6,
        lr_min: float = 2e-8,
        warmup_epochs: float = 5.0,
        lr_schedule: ScheduleShape = "release",
        weight_decay: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-8,
        prompt_lr_mult: float = 10.0,
        label_smoothing: float = 0.1,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        mix_switch_prob: float = 0.5,
        predict_top_k: int = 5,
        views_per_forward: int | None = None,
        compile: bool = False,
        model_folder: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(config, dict):  # load_from_checkpoint of a run started outside the CLI
            config = TCCLIPConfig(**config)
        config = replace(config) if config is not None else TCCLIPConfig()
        self.save_hyperparameters()
        if isinstance(self.hparams.get("config"), TCCLIPConfig):
            # keep checkpoints loadable with ``weights_only=True``: plain containers only
            self.hparams["config"] = asdict(self.hparams["config"])
        if lr < 0 or lr_min < 0 or warmup_epochs < 0:
            raise ValueError("lr, lr_min and warmup_epochs must be >= 0")
        if predict_top_k < 1:
            raise ValueError("predict_top_k must be >= 1")
        if lr_schedule not in SCHEDULE_SHAPES:
            raise ValueError(f"lr_schedule {lr_schedule!r}: expected one of {', '.join(SCHEDULE_SHAPES)}")
        if model_folder:
            self.model = folder_model(model_folder, pretrained, release_checkpoint, config, class_names)
            config = self.model.config
            self.hparams["config"] = asdict(config)  # the saved hyper-parameters describe the model built
        else:
            self.model = self._build_model(model_name, pretrained, release_checkpoint, config, class_names)
        self.config = config
        size = getattr(getattr(self.model, "visual", None), "image_size", None)
        size = size[0] if isinstance(size, (tuple, list)) else size
        if input_size is not None and size is not None and int(input_size) != int(size):
            raise ValueError(
                f"data.input_size {input_size} does not fit model {model_name!r}, which takes {size}x{size} "
                f"frames: set --data.input_size {size}"
            )
        self._train_class_names: list[str] | None = list(class_names) if class_names else None
        self._eval_sets: dict[str, list[EvalSetInfo]] = {}  # per evaluation stage, found again at every setup
        self.eval_metrics = nn.ModuleDict()
        self._predict_class_names: list[str] | None = None
        self._loaded_epoch: int | None = None
        self._train_skipped: Tensor | None = None
        self._train_decoded: Tensor | None = None  # training clips per backend (DECODERS order)
        # kept out of the module tree: the state dict stays the eager model's (no ``_orig_mod`` keys)
        self.__dict__["_compiled"] = torch.compile(self.model) if compile else None
        # the counts of the run before a resume (from its checkpoint), so the summary covers the whole run
        self._counts_before: dict[str, Any] = {"replaced": 0, "decoded": {}}

    # ----------------------------------------------------------------------------------------- model
    @staticmethod
    def _build_model(model_name, pretrained, release_checkpoint, config, class_names) -> nn.Module:
        from tc_clip.model import TCCLIP

        names = list(class_names) if class_names else None
        if release_checkpoint:
            return TCCLIP.from_release_checkpoint(
                release_checkpoint, clip_weights=pretrained, class_names=names, model_name=model_name,
                config=config,
            )
        return TCCLIP.from_clip(model_name, pretrained=pretrained, class_names=names, config=config)


    def forward(self, video: Tensor) -> Tensor:
        """``[B, T, 3, H, W]`` → logits ``[B, num_classes]`` for the current vocabulary (compiled with
        ``compile=True``)."""
        compiled = self.__dict__.get("_compiled")
        return compiled(video) if compiled is not None else self.model(video)

    def _use_vocabulary(self, names: Sequence[str]) -> None:
        current = getattr(self.model, "class_names", None)
        if current is None or list(current) != list(names):
            self.model.set_class_names(list(names))

    # ------------------------------------------------------------------------------------- data hooks
    def _datamodule(self):
        trainer = self._trainer
        return getattr(trainer, "datamodule", None) if trainer is not None else None

    def _discover_eval_sets(self, stage: str) -> list[EvalSetInfo]:
        """The data module's evaluation sets of ``stage``, else one set named after the stage with the
        training (or the model's) vocabulary."""
        dm = self._datamodule()
        if dm is not None and hasattr(dm, "eval_sets"):
            infos = list(dm.eval_sets(stage))
            if infos and all(len(info.class_names) > 0 for info in infos):
                return infos
        names = self._train_class_names or getattr(self.model, "class_names", None)
        if not names:
            raise RuntimeError(
                f"no class names for stage {stage!r}: the data module has no eval_sets() and the model "
                "has no vocabulary (pass model.class_names)"
            )
        return [EvalSetInfo(name=STAGE_PREFIX.get(stage, stage), class_names=list(names))]

    def setup(self, stage: str) -> None:
        """Runs at every ``trainer.fit/validate/test/predict``: the evaluation sets are discovered afresh each
        time (a data module may offer other sets while fitting, e.g. base-to-novel's deferred novel sets)."""
        dm = self._datamodule()
        if stage == "fit":
            names = getattr(dm, "train_class_names", None) if dm is not None else None
            if names:
                self._train_class_names = list(names)
            if not self._train_class_names:
                raise RuntimeError("training needs class names: the data module has no train_class_names")
            self._use_vocabulary(self._train_class_names)
        eval_stages = {"fit": ["validate"], "validate": ["validate"], "test": ["test"]}.get(stage, [])
        for eval_stage in eval_stages:
            sets = self._discover_eval_sets(eval_stage)
            self._eval_sets[eval_stage] = sets
            self.eval_metrics[STAGE_PREFIX[eval_stage]] = nn.ModuleList(
                EvalSetAccuracy(num_classes=len(s.class_names)) for s in sets
            )
        if stage == "predict":
            # resolved at the first batch: a checkpoint's vocabulary is restored after setup()
            self._predict_class_names = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._train_class_names:
            checkpoint["tc_clip_class_names"] = list(self._train_class_names)
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "fit":  # every process saves: the reductions are collective
            checkpoint["tc_clip_train_counts"] = {
                "replaced": self.train_videos_replaced(), "decoded": self.train_clips_decoded()
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        names = checkpoint.get("tc_clip_class_names")
        if names and not self._train_class_names:
            self._train_class_names = list(names)
        self._loaded_epoch = checkpoint.get("epoch")
        counts = checkpoint.get("tc_clip_train_counts")
        if isinstance(counts, dict):
            self._counts_before = {"replaced": int(counts.get("replaced", 0)),
                                   "decoded": {str(k): int(v) for k, v in dict(counts.get("decoded", {})).items()}}
            self._train_skipped = self._train_decoded = None

    # -------------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        names = self._train_class_names
        self._use_vocabulary(names)
        video, label = batch["video"], batch["label"]
        mixup = VideoMixup(
            num_classes=len(names),
            mixup_alpha=self.hparams.mixup_alpha,
            cutmix_alpha=self.hparams.cutmix_alpha,
            switch_prob=self.hparams.mix_switch_prob,
            label_smoothing=self.hparams.label_smoothing,
        )
        with step_rng(self.current_epoch, batch_idx):  # a resumed run makes the same random draws
            video, target = mixup(video, label)
            logits = self(video)  # (aggregation "random" draws too)
        loss = soft_target_cross_entropy(logits, target)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=video.shape[0])
        if "skipped" in batch:  # unreadable training videos replaced by others: summed on the device, no sync
            skipped = batch["skipped"].sum()
            self._train_skipped = skipped if self._train_skipped is None else self._train_skipped + skipped
        if "decoder" in batch:  # which backend read each clip, counted the same way
            codes = torch.arange(len(DECODERS), device=batch["decoder"].device)
            decoded = (batch["decoder"].view(-1, 1) == codes).sum(0)  # (bincount has no deterministic CUDA kernel)
            self._train_decoded = decoded if self._train_decoded is None else self._train_decoded + decoded
        return loss

    def train_videos_replaced(self) -> int:
        """Unreadable training videos replaced by others in this run, the part before a resume included (every
        process; collective under DDP: call it on all processes)."""
        local = self._train_skipped if self._train_skipped is not None else torch.zeros((), device=self.device)
        return int(self.trainer.strategy.reduce(local.float(), reduce_op="sum")) + self._counts_before["replaced"]

    def train_clips_decoded(self) -> dict[str, int]:
        """Training clips each decoder backend read in this run, over every process and the part before a
        resume (collective under DDP: call it on all processes); empty when the data says nothing about
        decoders."""
        local = self._train_decoded
        if local is None:
            local = torch.zeros(len(DECODERS), dtype=torch.long, device=self.device)
        total = self.trainer.strategy.reduce(local.float(), reduce_op="sum").tolist()
        before = self._counts_before["decoded"]
        counts = {name: int(n) + before.get(name, 0) for name, n in zip(DECODERS, total, strict=True)}
        return {name: n for name, n in counts.items() if n}

    def on_fit_start(self) -> None:
        dm = self._datamodule()
        per_device = getattr(dm, "batch_size", None)
        if per_device:
            tr = self.trainer
            total = per_device * tr.world_size * tr.accumulate_grad_batches
            rank_zero_info(
                f"global batch = {per_device} per device x {tr.world_size} devices x "
                f"{tr.accumulate_grad_batches} accumulation = {total}"
            )

    def on_train_epoch_start(self) -> None:
        self._drop_incomplete_global_batch()  # again: reloaded dataloaders reset the length
        if self._train_class_names:
            self._use_vocabulary(self._train_class_names)

    # ------------------------------------------------------------------------------------ evaluation
    def eval_scores(self, video: Tensor) -> Tensor:
        """``[B, V, T, 3, H, W]`` (or ``[B, T, 3, H, W]``) → ``[B, C]``: softmax per view, summed
        (:func:`~tc_clip.lightning.metrics.video_scores`, at most ``views_per_forward`` clips a pass)."""
        return video_scores(self.forward, video, self.hparams.views_per_forward)

    def _eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        sets = self._eval_sets.get(stage)
        if sets is None:  # evaluation without setup (e.g. trainer.validate(model, dataloaders))
            self.setup(stage)
            sets = self._eval_sets[stage]
        if dataloader_idx >= len(sets):
            raise RuntimeError(
                f"{stage} dataloader {dataloader_idx} has no entry in the data module's eval_sets() "
                f"({len(sets)} sets)"
            )
        self._use_vocabulary(sets[dataloader_idx].class_names)
        scores = self.eval_scores(batch["video"])
        metric = self.eval_metrics[STAGE_PREFIX[stage]][dataloader_idx]
        metric.update(scores, batch["label"], batch["index"], batch.get("skipped"))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("validate", batch, dataloader_idx)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def _eval_epoch_end(self, stage: str) -> dict[str, float]:
        prefix = STAGE_PREFIX[stage]
        sets = self._eval_sets.get(stage, [])
        metrics = self.eval_metrics[prefix] if prefix in self.eval_metrics else []
        results, logged = [], {}
        for info, metric in zip(sets, metrics, strict=True):
            if not metric.update_called:
                metric.reset()
                continue
            out = metric.compute()  # gathers from every process
            metric.reset()
            top1, top5 = float(out["top1"]), float(out["top5"])
            results.append(EvalSetResult(info.name, top1, top5, info.group, info.role, int(out["count"]),
                                         int(out["skipped"])))
            logged[f"{prefix}/{info.name}/top1"] = top1
            logged[f"{prefix}/{info.name}/top5"] = top5
        summary = summarize(results) if results and all(not math.isnan(r.top1) for r in results) else {}
        logged.update({f"{prefix}/{key}": value for key, value in summary.items()})
        if logged:
            # the values are already global (computed from every process): no further reduction
            self.log_dict({k: torch.tensor(v) for k, v in logged.items()}, sync_dist=False)
        if results and not self.trainer.sanity_checking:
            self._report(prefix, results, summary)
        return logged

    def _report(self, prefix: str, results: list[EvalSetResult], summary: dict) -> None:
        """Counts go to the run's results file in the logger's folder (not to the metric curves); the table
        is printed once per evaluation outside ``fit``."""
        trainer = self.trainer
        if not trainer.loggers:  # no log folder: nothing to write into, and no table outside the CLI's runs
            return
        log_dir = trainer.log_dir  # a broadcast: every process asks
        if not trainer.is_global_zero:
            return
        fitting = trainer.state.fn == "fit"
        describe = getattr(self._datamodule(), "describe", None)
        record = eval_record(
            prefix,
            epoch=trainer.current_epoch if fitting or self._loaded_epoch is None else self._loaded_epoch,
            step=trainer.global_step,
            results=results,
            summary=summary,
            meta=describe() if callable(describe) else {},
            ckpt_path=None if fitting else trainer.ckpt_path,
        )
        append_eval_record(log_dir, record)
        if not fitting:
            print(format_table(prefix, results, summary))

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("validate")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # -------------------------------------------------------------------------------------- predict
    def predict_class_names(self) -> list[str]:
        """The vocabulary ``predict`` scores against (the data module's, else the checkpoint's)."""
        if self._predict_class_names is None:
            self._predict_class_names = list(self._discover_eval_sets("predict")[0].class_names)
        return self._predict_class_names

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        """Top-k class names and scores (mean softmax over views) for every video of the batch."""
        names = self.predict_class_names()
        self._use_vocabulary(names)
        video = batch["video"]
        views = video.shape[1] if video.dim() == 6 else 1
        probs = self.eval_scores(video) / views
        k = min(self.hparams.predict_top_k, probs.shape[-1])
        scores, idx = probs.topk(k, dim=-1)
        paths = batch.get("path")
        labels = batch.get("label")
        indices = batch.get("index")
        out = []
        for i in range(probs.shape[0]):
            label = int(labels[i]) if labels is not None else -1
            out.append(
                {
                    "path": paths[i] if paths is not None else None,
                    "index": int(indices[i]) if indices is not None else None,
                    "label": label,
                    "label_name": names[label] if 0 <= label < len(names) else None,
                    "classes": [names[j] for j in idx[i].tolist()],
                    "class_ids": idx[i].tolist(),
                    "scores": [float(s) for s in scores[i].tolist()],
                    "skipped": bool(batch["skipped"][i]) if "skipped" in batch else False,
                }
            )
        return out

    # ---------------------------------------------------------------------------------- optimisation
    def optimizer_groups(self) -> list[dict[str, Any]]:
        """AdamW parameter groups: ``prompt`` (prompt vectors + VP blocks, ``prompt_lr_mult × lr``) and
        ``base`` (every other trainable parameter, ``lr``); empty groups are dropped."""
        hp = self.hparams
        groups = self.model.param_groups()
        unknown = set(groups) - {"prompt", "base"}
        if unknown:
            raise KeyError(f"model.param_groups() returned unknown groups {sorted(unknown)}")
        out = []
        for name, lr in (("prompt", hp.lr * hp.prompt_lr_mult), ("base", hp.lr)):
            params = [p for p in groups.get(name, []) if p.requires_grad]
            if params:
                out.append({"params": params, "lr": lr, "name": name})
        seen = {id(p) for g in out for p in g["params"]}
        missing = [n for n, p in self.model.named_parameters() if p.requires_grad and id(p) not in seen]
        if missing:
            raise RuntimeError(f"trainable parameters missing from model.param_groups(): {missing[:5]}")
        return out

    def _drop_incomplete_global_batch(self) -> None:
        """End the epoch after the last complete global batch: the leftover micro-batches (fewer than
        ``accumulate_grad_batches``) would otherwise make one more, smaller optimiser step (SPEC 5b)."""
        trainer = self._trainer
        if trainer is None or trainer.state.fn != "fit":
            return
        loop, accumulate = trainer.fit_loop, trainer.accumulate_grad_batches
        batches = loop.max_batches
        if accumulate <= 1 or not isinstance(batches, int) or batches == 0 or batches % accumulate == 0:
            return
        complete = batches - batches % accumulate
        if complete == 0:
            raise TooFewBatchesError(self._too_few_batches(batches, accumulate))
        loop.max_batches = complete
        rank_zero_info(
            f"{batches} batches per device and epoch, {accumulate} per optimiser step: the last "
            f"{batches - complete} are left out (complete global batches only)"
        )

    def _too_few_batches(self, batches: int, accumulate: int) -> str:
        """Why an epoch holds no complete global batch, and which option to change."""
        trainer = self.trainer
        per_device = getattr(self._datamodule(), "batch_size", None)
        batch = (f" (global batch {per_device} per device x {trainer.world_size} device(s) x {accumulate} = "
                 f"{per_device * trainer.world_size * accumulate})" if per_device else "")
        lower = "lower --global_batch_size (or data.batch_size / trainer.accumulate_grad_batches)"
        limit = trainer.limit_train_batches
        if limit is not None and not (isinstance(limit, float) and limit == 1.0):
            return (f"--trainer.limit_train_batches {limit} leaves {batches} training batch(es) per device, "
                    f"fewer than the {accumulate} that one optimiser step accumulates{batch}: raise the limit to "
                    f"at least {accumulate}, or {lower} for a short run")
        return (f"the training set gives {batches} batches per device, fewer than the {accumulate} that one "
                f"optimiser step accumulates{batch}: {lower}")

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch (complete global batches), per process."""
        trainer = self.trainer
        batches = trainer.num_training_batches
        if batches is None or math.isinf(batches) or batches <= 0:
            epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
            return max(1, int(trainer.estimated_stepping_batches) // epochs)
        return max(1, batches // trainer.accumulate_grad_batches)

    def schedule_steps(self) -> tuple[int, int]:
        """``(warm-up steps W, total optimiser steps S)`` of this run."""
        trainer = self.trainer
        if trainer.train_dataloader is None:
            trainer.fit_loop.setup_data()
        self._drop_incomplete_global_batch()
        total = int(trainer.estimated_stepping_batches)
        return int(round(self.hparams.warmup_epochs * self.steps_per_epoch())), total

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            self.optimizer_groups(), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps, weight_decay=hp.weight_decay
        )
        warmup_steps, total_steps = self.schedule_steps()
        shape = hp.get("lr_schedule", "release")
        scheduler = warmup_cosine_scheduler(optimizer, hp.lr_min, warmup_steps, total_steps, shape)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1, "name": "lr"},
        }
