"""The ``tc-clip`` command.

    tc-clip fit      --config configs/few_shot_hmdb.yaml --data.root /data/hmdb51 \\
                     --model.pretrained ViT-B-16.pt
    tc-clip validate --config configs/few_shot_hmdb.yaml --ckpt_path last
    tc-clip test     --config configs/zero_shot_k400.yaml --model.release_checkpoint zero_shot_k400.pth
    tc-clip predict  --config configs/demo.yaml --ckpt_path last
    tc-clip fit      --config configs/demo.yaml --print_config
    tc-clip check-data --config configs/few_shot_hmdb.yaml
    tc-clip pack     --config configs/zero_shot_k400.yaml --output_dir shards/
    tc-clip prepare  --config configs/few_shot_hmdb.yaml --output_dir /data/hmdb51_256
    tc-clip report   runs/ -o report
    tc-clip export   --model runs/demo/version_0/checkpoints/best.ckpt --output_dir demo-model
    tc-clip serve    --model demo-model

:func:`main` hands the words to their room: ``fit``/``validate``/``test``/``predict`` to the LightningCLI
(:mod:`~tc_clip.cli.app`, its derived values in :mod:`~tc_clip.cli.options`, run folders and ``--ckpt_path``
in :mod:`~tc_clip.cli.runs`), ``check-data``/``pack`` to :mod:`~tc_clip.cli.data_commands` (the same
``--config``/``--data.*`` options, only the data module built), ``prepare`` to :mod:`~tc_clip.cli.prepare`,
``export``/``serve`` to :mod:`~tc_clip.cli.export`/:mod:`~tc_clip.cli.serve` and ``report`` to
:mod:`~tc_clip.cli.report`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tc_clip.cli import report
from tc_clip.cli.app import DEFAULT_ROOT_DIR, TCCLIPCLI, build_cli, configure_fit, run
from tc_clip.cli.data_commands import DATA_COMMANDS, run_data_command
from tc_clip.cli.errors import report_user_errors, wants_traceback

__all__ = ["DEFAULT_ROOT_DIR", "TCCLIPCLI", "build_cli", "configure_fit", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tc-clip`` console script; returns the exit status. An error the user caused ends
    in one ``tc-clip: error:`` line and status 1 (:mod:`~tc_clip.cli.errors`); ``--traceback`` (anywhere on the
    command line) or ``TC_CLIP_TRACEBACK=1`` shows the stack instead."""
    words = list(sys.argv[1:] if argv is None else argv)
    traceback = wants_traceback(words)
    if argv is None:
        sys.argv[1:] = words  # LightningCLI reads sys.argv itself (and does not warn about duplicated args)
    else:
        argv = words
    return report_user_errors(lambda: _dispatch(words, argv), traceback)


def _dispatch(words: list[str], argv: Sequence[str] | None) -> int:
    if words and words[0] in DATA_COMMANDS:
        return run_data_command(words[0], words[1:])
    if words and words[0] == "report":
        return report.main(words[1:])
    if words and words[0] == "prepare":
        from tc_clip.cli import prepare  # PyAV encoding settings: loaded only for this command

        return prepare.main(words[1:])
    if words and words[0] in ("export", "serve"):  # model folders and the HTTP server: loaded only for these
        import importlib

        return importlib.import_module(f"tc_clip.cli.{words[0]}").main(words[1:])
    return run(argv)
