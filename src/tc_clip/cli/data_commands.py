"""``tc-clip check-data`` and ``tc-clip pack``: the ``fit`` options (``--config``, ``--data.*``), only the data
module built.

    tc-clip check-data --config configs/few_shot_hmdb.yaml --data.root /data/hmdb51 [--stages fit validate]
    tc-clip pack --config configs/zero_shot_k400.yaml --data.root /data/k400 --output_dir shards/ [--stage fit]

The arguments are parsed by the same parser as ``tc-clip fit`` (so a config, ``--data.init_args.*`` and links
behave identically); the model, trainer and log folder are never created.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from tc_clip.cli.app import TCCLIPCLI, build_cli

DATA_COMMANDS = ("check-data", "pack")
STAGES = ("fit", "validate", "test", "predict")


def _own_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"tc-clip {command}", add_help=False,
        description="Takes every option of 'tc-clip fit' (see tc-clip fit --help); builds only the data module.",
    )
    parser.add_argument("-h", "--help", action="store_true")
    if command == "check-data":
        parser.add_argument("--stages", nargs="+", choices=STAGES, default=["fit", "validate", "test"])
    else:
        parser.add_argument("--output_dir", "--output-dir", dest="output_dir", required=False)
        parser.add_argument("--stage", choices=STAGES, default="fit")
    return parser


class DataOnlyCLI(TCCLIPCLI):
    """The ``fit`` parser of ``tc-clip``; instantiates only ``data``."""

    def instantiate_classes(self) -> None:
        data = self.config.get("data")
        if data is None or not data.get("class_path"):
            self.parser.error("no data module: give --config with a data: section, or --data CLASS")
        module, _, name = data.class_path.rpartition(".")
        init = data.get("init_args")
        self.datamodule = getattr(importlib.import_module(module), name)(**(init.as_dict() if init else {}))
        self.model = self.trainer = None

    def after_instantiate_classes(self) -> None:
        pass


def build_datamodule(fit_args: Sequence[str]) -> Any:
    """The data module that ``tc-clip fit <fit_args>`` would build, and nothing else."""
    argv, sys.argv = sys.argv, sys.argv[:1]  # the options are passed as args: LightningCLI must not also see them
    try:
        return build_cli(list(fit_args), run=False, cli_class=DataOnlyCLI).datamodule
    finally:
        sys.argv = argv


def run_data_command(command: str, argv: Sequence[str]) -> int:
    """Entry point of ``tc-clip check-data`` / ``tc-clip pack``; returns the exit status."""
    own, rest = _own_parser(command).parse_known_args(list(argv))
    if own.help:
        _own_parser(command).print_help()
        return 0
    datamodule = build_datamodule(rest)
    if command == "check-data":
        from tc_clip.data.check import run_checks

        report = run_checks(datamodule, own.stages)
        print(report)
        return 0 if report.ok else 1
    if not own.output_dir:
        print(f"tc-clip {command}: --output_dir is required", file=sys.stderr)
        return 2
    from tc_clip.data.shards import pack

    summary = pack(datamodule, own.output_dir, stage=own.stage)
    print("\n".join(f"{key}: {value}" for key, value in dict(summary).items()))
    return 0
