"""``tc-clip prepare``: re-encode a dataset's videos once for training (:mod:`tc_clip.data.prepare`).

    tc-clip prepare --config configs/few_shot_hmdb.yaml --data.root /data/hmdb51 --output_dir /data/hmdb51_256
    tc-clip prepare --input_dir /data/k400/videos --output_dir /data/k400_256 --workers 16

The data module is the one ``tc-clip fit`` builds from the same ``--config`` / ``--data.*`` options
(``--stages``: fit, validate, test by default); ``--input_dir`` takes every video below a folder instead.
Rerunning the same command resumes: finished files are skipped. Exit status 0 when the command ran
(unreadable sources are listed, not fatal), 2 on a refused command, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tc_clip.cli.errors import Parser, UsageError
from tc_clip.data.reencode import ENCODERS, PRESETS, TUNES, PrepareSettings

STAGES = ("fit", "validate", "test", "predict")


def build_parser() -> argparse.ArgumentParser:
    defaults = PrepareSettings()
    p = Parser(
        prog="tc-clip prepare", add_help=False, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1],
        epilog="Any other option is an option of 'tc-clip fit' (--config, --data.*): see tc-clip fit --help.",
    )
    p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    p.add_argument("--output_dir", "--output-dir", dest="output_dir", help="where the prepared tree goes (required)")
    p.add_argument("--input_dir", "--input-dir", dest="input_dir", help="a plain folder of videos instead of a config")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=["fit", "validate", "test"],
                   help="the data module's stages whose videos are prepared")
    p.add_argument("--short_side", type=int, default=defaults.short_side, help="short side in pixels, never upscaled")
    p.add_argument("--gop", type=int, default=defaults.gop, help="a keyframe at least every GOP frames")
    p.add_argument("--bframes", type=int, default=defaults.bframes, help="B-frames (0: none, the fastest to seek)")
    p.add_argument("--crf", "--quality", dest="crf", type=float, default=defaults.crf,
                   help="libx264 CRF (18: visually lossless; mmaction2 uses the default 23)")
    p.add_argument("--preset", choices=PRESETS, default=defaults.preset, help="libx264 preset")
    p.add_argument("--tune", choices=TUNES, default=defaults.tune,
                   help="libx264 tune (fastdecode: about twice as fast to decode, files ~17%% larger; none)")
    p.add_argument("--encoder", choices=ENCODERS, default=defaults.encoder,
                   help="pyav (FFmpeg's libraries through PyAV) or ffmpeg (the binary on PATH)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    p.add_argument("--psnr_videos", type=int, default=8, help="videos whose PSNR against the source is measured")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def _fail(message: str, status: int = 2) -> int:
    print(f"tc-clip: error: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tc-clip prepare``; returns the exit status."""
    from tc_clip.data.prepare import prepare_datamodule, prepare_folder

    parser = build_parser()
    try:
        own, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    except UsageError as err:
        return _fail(str(err))
    if own.help:
        parser.print_help()
        return 0
    if not own.output_dir:
        return _fail("prepare: --output_dir is required")
    settings = PrepareSettings(own.short_side, own.gop, own.bframes, own.crf, own.preset, own.tune, own.encoder)
    try:
        settings.validate()
    except ValueError as err:
        return _fail(f"prepare: {err}")
    kwargs = {"settings": settings, "workers": own.workers, "psnr_videos": own.psnr_videos,
              "progress": not own.no_progress}
    try:
        if own.input_dir:
            if rest:
                return _fail(f"prepare: --input_dir takes no data module options, got {' '.join(rest)}")
            report = prepare_folder(own.input_dir, own.output_dir, **kwargs)
        elif not rest:
            return _fail("prepare: give the data options of 'tc-clip fit' (--config, --data.*) or --input_dir")
        else:
            from tc_clip.cli.data_commands import build_datamodule

            report = prepare_datamodule(build_datamodule(rest), own.output_dir, own.stages, **kwargs)
    except (ValueError, OSError) as err:  # PrepareError, and a data module's list or folder errors
        return _fail(str(err))
    except KeyboardInterrupt:
        print("tc-clip prepare: interrupted; the same command resumes where it stopped", file=sys.stderr)
        return 130
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
