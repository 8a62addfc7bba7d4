"""The ``tc-clip`` command: Lightning CLI for TC-CLIP.

    tc-clip fit      --config configs/few_shot_hmdb.yaml --data.root /data/hmdb51 \
                     --model.pretrained ViT-B-16.pt
    tc-clip validate --config configs/few_shot_hmdb.yaml --ckpt_path last
    tc-clip test     --config configs/zero_shot_k400.yaml --model.release_checkpoint zero_shot_k400.pth
    tc-clip predict  --config configs/demo.yaml --ckpt_path last
    tc-clip fit      --config configs/demo.yaml --print_config
    tc-clip check-data --config configs/few_shot_hmdb.yaml

Everything is ``LightningCLI`` (jsonargparse): ``--model.*`` are :class:`TCCLIPModule`'s arguments,
``--data`` is any data module (``class_path`` + ``init_args``), ``--trainer.*`` the Trainer's,
``--checkpoint.*`` the :class:`ModelCheckpoint`'s. Unknown keys and wrong types are rejected by name
before anything is built. On top of plain LightningCLI:

* loggers: unless ``--trainer.logger`` is given, a TensorBoard and a CSV logger write into
  ``<trainer.default_root_dir>/version_N/`` (with ``config.yaml`` and ``checkpoints/``);
* callbacks: ModelCheckpoint (best by ``val/top1``, ``--checkpoint.*``), :class:`LastCheckpoint`
  (``last.ckpt`` after every epoch and every ``--last_every_n_steps`` steps), :class:`NonFiniteGuard`
  (stops at a NaN/inf loss or weights, naming the step, before anything is saved), :class:`SamplerResume`
  (a run resumed mid-epoch continues with the next unseen sample), LearningRateMonitor (when logging);
* ``--ckpt_path last`` resumes from this run's newest readable ``last*.ckpt``
  (``<trainer.default_root_dir>/version_*/checkpoints`` or ``--checkpoint.dirpath``), restoring weights,
  optimiser, scheduler, epoch and sampler position, and logs into the same version folder; remote
  ``http(s)://`` checkpoints and ``--weights_only false`` are refused (they would run code from the file);
* ``predict`` writes ``predictions.csv`` into the log folder unless a :class:`PredictionWriter` is
  configured (``--trainer.callbacks+=tc_clip.callbacks.PredictionWriter
  --trainer.callbacks.output_path preds.json``);
* ``check-data`` forwards to :func:`tc_clip.data.check.main`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from tc_clip.callbacks.predict_writer import PredictionWriter
from tc_clip.lightning.checkpointing import (
    CheckpointError,
    ContinuingCSVLogger,
    LastCheckpoint,
    SamplerResume,
    resolve_ckpt_path,
    resume_point,
)
from tc_clip.lightning.guards import NonFiniteGuard
from tc_clip.lightning.module import TCCLIPModule

DEFAULT_ROOT_DIR = "runs"
LAST_EVERY_N_STEPS = 200

CHECKPOINT_DEFAULTS: dict[str, Any] = {
    "checkpoint.monitor": "val/top1",
    "checkpoint.mode": "max",
    "checkpoint.save_last": False,  # LastCheckpoint writes last.ckpt after every epoch
    "checkpoint.save_top_k": 1,
    "checkpoint.filename": "best-{epoch:03d}",
}

_EPILOG = (
    "Also: 'tc-clip check-data --config CONFIG' verifies a dataset's list files, label files and videos "
    "(tc-clip check-data --help)."
)


def _import_data_modules() -> None:
    """Import the data modules so that ``data.class_path`` may use their short names."""
    try:
        import tc_clip.data  # noqa: F401
    except ImportError as err:  # pragma: no cover - reported only when a config needs them
        rank_zero_info(f"tc_clip.data could not be imported: {err}")


class ConfigNextToCheckpoints(SaveConfigCallback):
    """Saves the resolved config in the log folder (Lightning's behaviour) and, when training, also in
    every checkpoint folder, so a checkpoint folder copied elsewhere still says how it was made."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for cb in trainer.checkpoint_callbacks:
            dirpath = getattr(cb, "dirpath", None)
            if not dirpath:
                continue
            os.makedirs(dirpath, exist_ok=True)
            self.parser.save(
                self.config, os.path.join(dirpath, self.config_filename), skip_none=False,
                overwrite=True, multifile=self.multifile,
            )


class TCCLIPCLI(LightningCLI):
    """LightningCLI with TC-CLIP's defaults (see the module docstring)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(CHECKPOINT_DEFAULTS)
        parser.add_argument(
            "--last_every_n_steps", type=int, default=LAST_EVERY_N_STEPS,
            help="fit: also write last.ckpt every N optimiser steps, so a killed run loses at most N steps "
            "(0: only at epoch ends)",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        cfg = self.config[subcommand]
        dirpath = cfg.get("checkpoint", {}).get("dirpath") if cfg.get("checkpoint") else None
        root = cfg.trainer.get("default_root_dir") or DEFAULT_ROOT_DIR
        try:
            cfg.ckpt_path = resolve_ckpt_path(
                cfg.get("ckpt_path"), subcommand, root, dirpath, cfg.get("weights_only")
            )
        except CheckpointError as err:
            raise SystemExit(str(err)) from None

    def before_instantiate_classes(self) -> None:
        # cheap checks of values the data module would only reject after the model is built
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        init = cfg.get("data", {}).get("init_args") if cfg.get("data") else None
        if init is not None and init.get("protocol") == "few_shot" and not init.get("shot"):
            self._parser(self.subcommand).error(
                "data.protocol 'few_shot' needs the number of shots: add --data.shot K (2, 4, 8 or 16)"
            )
        model_cfg = cfg.get("model", {}).get("config") if cfg.get("model") else None
        frames = init.get("num_frames") if init is not None else None
        model_frames = model_cfg.get("num_frames") if model_cfg is not None else None
        if frames and model_frames and frames != model_frames:
            rank_zero_warn(
                f"data.num_frames ({frames}) differs from model.config.num_frames ({model_frames}); "
                "set both (the model was configured for the latter)"
            )

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        cfg = self._get(self.config_init, "trainer", default={})
        root = cfg.get("default_root_dir") or DEFAULT_ROOT_DIR
        logger = cfg.get("logger")
        if logger is None or logger is True:
            ckpt = self._get(self.config_init, "ckpt_path") if self.subcommand == "fit" else None
            version, step = resume_point(ckpt, root) or (None, None)  # a resumed fit continues its folder
            tb = TensorBoardLogger(save_dir=root, name="", version=version, default_hp_metric=False)
            # CSV first: it creates the shared version folder before TensorBoard writes into it
            kwargs["logger"] = [ContinuingCSVLogger(save_dir=root, name="", version=tb.version, resume_step=step), tb]
            logger = kwargs["logger"]
        has_logger = bool(logger) and logger is not False
        callbacks = list(cfg.get("callbacks") or [])
        if (
            self.subcommand == "fit"
            and has_logger
            and not any(isinstance(c, LearningRateMonitor) for c in callbacks)
        ):
            kwargs["callbacks"] = callbacks + [LearningRateMonitor(logging_interval="step")]
        if self.subcommand == "fit" and not any(isinstance(c, LastCheckpoint) for c in callbacks):
            dirpath = self._get(self.config_init, "checkpoint").dirpath
            every = self._get(self.config_init, "last_every_n_steps")
            kwargs["callbacks"] = list(kwargs.get("callbacks", callbacks)) + [
                LastCheckpoint(dirpath=dirpath, every_n_train_steps=every)
            ]
        if self.subcommand == "fit":  # stop on NaN/inf before it is saved; resume mid-epoch exactly
            kwargs["callbacks"] = list(kwargs.get("callbacks", callbacks)) + [NonFiniteGuard(), SamplerResume()]
        if self.subcommand == "predict" and not any(isinstance(c, PredictionWriter) for c in callbacks):
            kwargs["callbacks"] = list(kwargs.get("callbacks", callbacks)) + [PredictionWriter()]
        return super().instantiate_trainer(**kwargs)


def build_cli(args: Sequence[str] | None = None, run: bool = True, **kwargs: Any) -> TCCLIPCLI:
    """The CLI object (``run=False`` parses and instantiates only; used by the tests)."""
    _import_data_modules()
    kwargs.setdefault("save_config_callback", ConfigNextToCheckpoints)
    kwargs.setdefault("save_config_kwargs", {"overwrite": True})
    kwargs.setdefault("seed_everything_default", 42)
    kwargs.setdefault("trainer_defaults", {"default_root_dir": DEFAULT_ROOT_DIR})
    # allow_abbrev=False: "--trainer.max_epoch" must be an error, not an abbreviation of max_epochs
    parser_kwargs = {
        "description": "TC-CLIP for video action recognition (Lightning CLI).",
        "epilog": _EPILOG,
        "allow_abbrev": False,
    }
    parser_kwargs.update({cmd: {"allow_abbrev": False} for cmd in ("fit", "validate", "test", "predict")})
    kwargs.setdefault("parser_kwargs", parser_kwargs)
    return TCCLIPCLI(
        TCCLIPModule,
        L.LightningDataModule,
        subclass_mode_data=True,
        args=list(args) if args is not None else None,
        run=run,
        **kwargs,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tc-clip`` console script."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] == "check-data":
        from tc_clip.data.check import main as check_main

        return int(check_main(words[1:]) or 0)
    build_cli(argv)  # None: LightningCLI reads sys.argv itself (and does not warn about duplicated args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
