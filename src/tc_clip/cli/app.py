"""``tc-clip fit|validate|test|predict``: :class:`TCCLIPCLI`, a LightningCLI with TC-CLIP's defaults.

Everything is ``LightningCLI`` (jsonargparse): ``--model.*`` are :class:`TCCLIPModule`'s arguments,
``--data`` is any data module (``class_path`` + ``init_args``), ``--trainer.*`` the Trainer's,
``--checkpoint.*`` the :class:`ModelCheckpoint`'s. Unknown keys and wrong types are rejected by name
before anything is built. On top of plain LightningCLI:

* loggers: unless ``--trainer.logger`` is given, a TensorBoard and a CSV logger write into
  ``<trainer.default_root_dir>/version_N/`` (with ``config.yaml`` and ``checkpoints/``);
* callbacks: ModelCheckpoint (``checkpoints/best.ckpt`` by ``checkpoint.monitor``, by default the first
  validation set's top-1; ``--checkpoint.*``), :class:`LastCheckpoint` (``last.ckpt`` after every epoch
  and every ``--last_every_n_steps`` steps), :class:`NonFiniteGuard` (stops at a NaN/inf loss or weights,
  naming the step, before anything is saved), :class:`SamplerResume` (a run resumed mid-epoch continues
  with the next unseen sample), LearningRateMonitor (when logging);
* ``--ckpt_path last`` resumes from this run's newest readable ``last*.ckpt`` whose run fingerprint
  (:mod:`tc_clip.cli.fingerprint`, stored by :class:`RunFingerprint`) matches
  (``<trainer.default_root_dir>/version_*/checkpoints`` or ``--checkpoint.dirpath``), restoring weights,
  optimiser, scheduler, epoch and sampler position, and logs into the same version folder; a checkpoint of
  another run is refused naming the keys that differ (``--init_from PATH`` starts a new run from its
  weights); remote ``http(s)://`` checkpoints and ``--weights_only false`` are refused (they would run code
  from the file), and local paths reach Lightning absolute; checkpoints are written atomically
  (:class:`AtomicCheckpointIO`);
* ``predict`` writes ``predictions.csv`` into the log folder (a rerun of the same prediction continues, or
  finds complete, the earlier folder; ``--redo true`` computes it again) unless a :class:`PredictionWriter` is
  configured (``--trainer.callbacks+=tc_clip.callbacks.PredictionWriter
  --trainer.callbacks.output_path preds.json``);
* the data commands (:mod:`tc_clip.cli.data_commands`) parse their options with the same parser.

Configs run on the machine at hand: ``trainer.precision: null`` picks bf16-mixed (16-mixed without bf16) on
GPUs and 32-true on CPU; ``global_batch_size`` fixes the global batch and the gradient accumulation follows
from the number of processes. ``data.num_frames`` drives ``model.config.num_frames`` and ``data.input_size``
drives ``model.input_size``, checked against the architecture when the model is built (linked: one value).
With ``--ckpt_path``, options that may change after training (``model.pretrained``, ``predict_top_k``, ...)
are taken from the command line; the architecture comes from the checkpoint and a contradicting option is
refused by name.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from tc_clip.callbacks import (
    FitSummary,
    LastCheckpoint,
    NonFiniteGuard,
    NovelAtBestBase,
    PredictionWriter,
    SamplerResume,
    ValidateAtFitEnd,
)
from tc_clip.callbacks.run_fingerprint import RUN_FILE, RunFingerprint
from tc_clip.cli.fingerprint import config_keys
from tc_clip.cli.options import accumulation_for, all_batches_limits, auto_precision, checkpoint_model_options
from tc_clip.cli.runs import (
    ContinuingCSVLogger,
    local_path,
    next_version,
    previous_version,
    resolve_ckpt_path,
    resume_point,
    reusable_version,
    validate_checkpoint,
)
from tc_clip.errors import ConfigError, UserError
from tc_clip.lightning.checkpoint_io import AtomicCheckpointIO
from tc_clip.lightning.module import TCCLIPModule
from tc_clip.model import CheckpointError

DEFAULT_ROOT_DIR = "runs"
LAST_EVERY_N_STEPS = 200

CHECKPOINT_DEFAULTS: dict[str, Any] = {
    "checkpoint.monitor": None,  # null: top-1 of the first validation set (configs name their metric)
    "checkpoint.mode": "max",
    "checkpoint.save_last": False,  # LastCheckpoint writes last.ckpt after every epoch
    "checkpoint.save_top_k": 1,
    "checkpoint.filename": "best",  # checkpoints/best.ckpt, replaced in place when the score improves
    "checkpoint.enable_version_counter": False,
}

_EPILOG = (
    "Also: 'tc-clip check-data --config CONFIG [--data.* ...]' checks a dataset's lists, labels and videos; "
    "'tc-clip pack --config CONFIG --output_dir DIR' writes shards; 'tc-clip prepare --config CONFIG --output_dir "
    "DIR' re-encodes the videos for training; 'tc-clip report RUNS...' prints the paper's tables; "
    "'tc-clip export --model CKPT --output_dir DIR' writes a shareable model folder; 'tc-clip serve --model DIR' "
    "serves it over HTTP. "
    "An error you can fix ends in one 'tc-clip: error:' line; --traceback (or TC_CLIP_TRACEBACK=1) shows the stack."
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
        add_run_arguments(parser)
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(CHECKPOINT_DEFAULTS)
        parser.add_argument(
            "--last_every_n_steps", type=int, default=LAST_EVERY_N_STEPS,
            help="fit: also write last.ckpt every N optimiser steps, so a killed run loses at most N steps "
            "(0: only at epoch ends)",
        )
        parser.add_argument(
            "--init_from", type=str | None, default=None,
            help="fit: start a new run from the weights of this Lightning checkpoint (weights only: fresh "
            "optimiser, epoch 0, its own version folder; the checkpoint may come from another run)",
        )
        parser.add_argument(
            "--redo", type=bool, default=False,
            help="predict: compute the predictions again, in a new version folder, even when an earlier run of "
            "the same prediction is complete",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        cfg = self.config[subcommand]
        dirpath = cfg.get("checkpoint", {}).get("dirpath") if cfg.get("checkpoint") else None
        root = cfg.trainer.get("default_root_dir") or DEFAULT_ROOT_DIR
        self.run_keys = config_keys(cfg, subcommand)
        self.resume_requested = cfg.get("ckpt_path") == "last"
        try:
            if subcommand == "fit" and cfg.get("init_from"):
                if cfg.get("ckpt_path"):
                    raise CheckpointError(cfg.init_from, "--init_from starts a new run: drop --ckpt_path")
                validate_checkpoint(cfg.init_from)
                cfg.init_from = local_path(cfg.init_from)
            cfg.ckpt_path = resolve_ckpt_path(
                cfg.get("ckpt_path"), subcommand, root, dirpath, cfg.get("weights_only"),
                keys=self.run_keys if subcommand == "fit" else None,
            )
        except CheckpointError as err:
            raise SystemExit(f"tc-clip: error: {err}") from None

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        # the module prints one table per evaluation; Lightning's would repeat it once per dataloader
        for name in ("validate", "test"):
            sub = getattr(self, "_subcommand_parsers", {}).get(name)
            if sub is not None:
                sub.set_defaults(verbose=False)

    def _parse_ckpt_path(self) -> None:
        """With ``--ckpt_path``: free model options keep the command line's value, the architecture comes
        from the checkpoint, and a contradiction is refused by name (replaces LightningCLI's blanket
        re-application of the checkpoint's hyper-parameters)."""
        subcommand = self.config.get("subcommand")
        cfg = self.config.get(subcommand) if subcommand else None
        path = cfg.get("ckpt_path") if cfg is not None else None
        if not path or not Path(path).is_file():
            return
        parser = self._parser(subcommand)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            saved = dict(ckpt.get("hyper_parameters") or {})
        except Exception as err:  # noqa: BLE001 - reported with the file name
            parser.error(f"--ckpt_path {path}: not a readable Lightning checkpoint ({type(err).__name__}: {err})")
        defaults = parser.get_defaults().get("model")
        updates, errors = checkpoint_model_options(
            cfg.model.as_dict(), defaults.as_dict() if defaults is not None else {}, saved, subcommand == "fit"
        )
        if errors:
            parser.error(f"options that contradict the checkpoint {path}:\n  " + "\n  ".join(errors))
        for key, value in updates.items():
            cfg[f"model.{key}"] = value
        if updates:
            rank_zero_info(f"from the checkpoint {path}: " + ", ".join(f"model.{k}={v!r}" for k, v in updates.items()))

    def instantiate_classes(self) -> None:
        """A constructor's ``ValueError``/``OSError`` is about the options it was given: a user error."""
        try:
            super().instantiate_classes()
        except (ValueError, OSError) as err:
            if isinstance(err, UserError):
                raise
            raise ConfigError(str(err)) from err

    def before_instantiate_classes(self) -> None:
        # cheap checks of values the data module would only reject after the model is built
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        init = cfg.get("data", {}).get("init_args") if cfg.get("data") else None
        if (init is not None and init.get("protocol") == "few_shot" and not init.get("shot")
                and not init.get("train_list")):
            self._parser(self.subcommand).error(
                "data.protocol 'few_shot' needs its K-shot training list (--data.train_list) or the number of "
                "shots (--data.shot K, 2, 4, 8 or 16)"
            )
        trainer = cfg.get("trainer")
        if trainer is not None and trainer.get("precision") is None:
            trainer.precision = auto_precision(trainer.get("accelerator"))
        for warning in all_batches_limits(trainer or {}):
            _loud_warning(warning)
        threads = cfg.get("num_threads")
        if threads is not None:
            if threads < 1:
                self._parser(self.subcommand).error(f"num_threads must be >= 1 (or null), got {threads}")
            torch.set_num_threads(threads)

    def after_instantiate_classes(self) -> None:
        if self.subcommand == "fit" or (self.subcommand is None and self.trainer is not None):
            configure_fit(self)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        cfg = self._get(self.config_init, "trainer", default={})
        root = cfg.get("default_root_dir") or DEFAULT_ROOT_DIR
        logger = cfg.get("logger")
        if logger is None or logger is True:
            ckpt = self._get(self.config_init, "ckpt_path") if self.subcommand == "fit" else None
            version, step = resume_point(ckpt, root) or (None, None)  # a resumed fit continues its folder
            if self.subcommand == "fit" and ckpt is None and getattr(self, "resume_requested", False):
                version = reusable_version(root, getattr(self, "run_keys", None))  # a folder left by a kill
                step = 0 if version is not None else None  # its rows are logged again
                self.reused_folder = version is not None
            if self.subcommand == "predict":
                version = self._predict_version(root, list(cfg.get("callbacks") or []))
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
        if self.subcommand == "fit":  # stop on NaN/inf before it is saved; resume mid-epoch exactly; whose run
            kwargs["callbacks"] = list(kwargs.get("callbacks", callbacks)) + [
                NonFiniteGuard(), SamplerResume(), RunFingerprint(getattr(self, "run_keys", None))
            ]
        plugins = cfg.get("plugins")
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins] if plugins else []
        if not any(isinstance(p, CheckpointIO) for p in plugins):  # checkpoints written atomically
            kwargs["plugins"] = plugins + [AtomicCheckpointIO()]
        if self.subcommand == "predict" and not any(isinstance(c, PredictionWriter) for c in callbacks):
            redo = bool(self._get(self.config_init, "redo"))
            kwargs["callbacks"] = list(kwargs.get("callbacks", callbacks)) + [PredictionWriter(redo=redo)]
        resumed = self._get(self.config_init, "ckpt_path") is not None or getattr(self, "reused_folder", False)
        _quiet_expected_warnings(self.subcommand, resumed=resumed)
        return super().instantiate_trainer(**kwargs)


    def _predict_version(self, root: str, callbacks: list[Any]) -> int | None:
        """An earlier ``predict`` folder of the same command (config keys and checkpoint file), which the
        default :class:`PredictionWriter` then finds complete or continues; ``None`` (a new folder) with
        ``--redo`` or a writer of its own. Notes the keys in the chosen folder's ``run.json``."""
        if self._get(self.config_init, "redo") or any(isinstance(c, PredictionWriter) for c in callbacks):
            return None
        ckpt = self._get(self.config_init, "ckpt_path")
        stat = os.stat(ckpt) if ckpt and os.path.isfile(str(ckpt)) else None
        keys = {**getattr(self, "run_keys", {}),
                "ckpt": json.dumps([str(ckpt), stat.st_size, stat.st_mtime_ns] if stat else ckpt)}
        version = previous_version(root, keys, "predict")
        folder = Path(root) / f"version_{version if version is not None else next_version(root)}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RUN_FILE).write_text(json.dumps({"subcommand": "predict", "keys": keys}, indent=1))
        return int(folder.name.removeprefix("version_"))


@rank_zero_only
def _loud_warning(message: str) -> None:
    """A warning that must not drown in the log (nor be silenced by warning filters)."""
    print(f"tc-clip: WARNING: {message}", file=sys.stderr, flush=True)


def _quiet_expected_warnings(subcommand: str | None, resumed: bool) -> None:
    """Lightning warnings that say nothing a user of this CLI can act on: evaluating a checkpoint
    without its training callbacks (they are training-only), and a resumed fit writing into its own
    checkpoint folder (that is the point of resuming)."""
    if subcommand != "fit":
        warnings.filterwarnings("ignore", message=r".*callbacks used to create the checkpoint need to be provided")
    elif resumed:
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def build_cli(
    args: Sequence[str] | None = None, run: bool = True, cli_class: type[TCCLIPCLI] | None = None, **kwargs: Any
) -> TCCLIPCLI:
    """The CLI object (``run=False`` parses the ``fit`` options and instantiates only; used by the tests)."""
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
    return (cli_class or TCCLIPCLI)(
        TCCLIPModule,
        L.LightningDataModule,
        subclass_mode_data=True,
        args=list(args) if args is not None else None,
        run=run,
        **kwargs,
    )


def add_run_arguments(parser: LightningArgumentParser) -> None:
    """``global_batch_size`` and the links that make one data value drive the model too."""
    parser.add_argument(
        "--global_batch_size", type=int | None, default=None,
        help="fit: the global batch (data.batch_size x processes x accumulation); the gradient accumulation "
        "is computed from the number of processes. null: trainer.accumulate_grad_batches as given.",
    )
    parser.add_argument(
        "--num_threads", type=int | None, default=None,
        help="torch's intra-op threads in the main process (torch.set_num_threads). null: torch's default (one "
        "per core). 1 suits tiny models on small or busy machines, where threads waiting for each other cost "
        "more than they share (the demo sets it).",
    )
    parser.link_arguments("data.init_args.num_frames", "model.config.num_frames", apply_on="parse")
    parser.link_arguments("data.init_args.input_size", "model.input_size", apply_on="parse")


def _monitored_metric(datamodule: Any) -> str | None:
    """``val/{set}/top1`` of the first validation set (the base set of a base-to-novel split)."""
    try:
        sets = datamodule.eval_sets("validate")
    except Exception as err:  # noqa: BLE001 - only a default: ModelCheckpoint then keeps the latest epoch
        rank_zero_info(f"checkpoint.monitor left unset: the validation sets are unknown ({err})")
        return None
    named = [s for s in sets if getattr(s, "role", None) != "novel"] or list(sets)
    return f"val/{named[0].name}/top1" if named else None


def config_checkpoint(cli: LightningCLI) -> ModelCheckpoint | None:
    """The ``--checkpoint.*`` ModelCheckpoint (keeps ``best.ckpt``)."""
    ckpt = cli._get(cli.config_init, "checkpoint")
    return ckpt if isinstance(ckpt, ModelCheckpoint) else None


def configure_fit(cli: LightningCLI) -> None:
    """Gradient accumulation from ``global_batch_size``, the default monitored metric, and the callbacks
    that validate the last epoch, defer base-to-novel novel sets and print the end-of-fit summary."""
    trainer, config = cli.trainer, cli.config.get(str(cli.subcommand), cli.config)
    global_batch = config.get("global_batch_size")
    per_device = getattr(cli.datamodule, "batch_size", None)
    if global_batch:
        if not per_device:
            cli._parser(cli.subcommand).error("global_batch_size needs a data module with batch_size")
        given = config.trainer.get("accumulate_grad_batches")
        try:
            accumulate = accumulation_for(global_batch, per_device, trainer.world_size, given)
        except ValueError as err:
            cli._parser(cli.subcommand).error(str(err))
        trainer.accumulate_grad_batches = accumulate  # not written back: the config stays valid on any machine
    ckpt = config_checkpoint(cli)
    if ckpt is not None and ckpt.monitor is None and hasattr(cli.datamodule, "eval_sets"):
        ckpt.monitor = _monitored_metric(cli.datamodule)
        if ckpt.monitor:
            rank_zero_info(f"checkpoint.monitor: {ckpt.monitor}")
            if config.get("checkpoint") is not None:  # the saved config.yaml names what selected best.ckpt
                config.checkpoint.monitor = ckpt.monitor
    if config.get("init_from"):
        init_weights(cli.model, config.init_from)
    extra = [cb() for cb in (ValidateAtFitEnd, NovelAtBestBase, FitSummary)
             if not any(isinstance(c, cb) for c in trainer.callbacks)]
    first_ckpt = next((i for i, c in enumerate(trainer.callbacks) if isinstance(c, ModelCheckpoint)),
                      len(trainer.callbacks))
    trainer.callbacks[first_ckpt:first_ckpt] = extra
    # last.ckpt last: it then holds the other checkpoint callbacks' state of the same step (best.ckpt's score),
    # so a resumed run keeps the best epoch it had
    trainer.callbacks.sort(key=lambda c: isinstance(c, LastCheckpoint))


def init_weights(model: L.LightningModule, path: str) -> None:
    """``--init_from``: the model's weights from a Lightning checkpoint (nothing else: a new run)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    try:
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as err:
        raise CheckpointError(path, f"--init_from: its weights do not fit this model ({err})") from None
    if missing or unexpected:
        raise CheckpointError(path, f"--init_from: its weights do not fit this model (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]})")
    rank_zero_info(f"--init_from: weights from {path} (a new run: optimiser, schedule and epoch start afresh)")


def run(argv: Sequence[str] | None = None) -> int:
    """``tc-clip fit|validate|test|predict ...``; returns the exit status (user errors: see
    :mod:`tc_clip.cli.errors`)."""
    build_cli(argv)  # None: LightningCLI reads sys.argv itself (and does not warn about duplicated args)
    return 0
