"""``tc-clip serve``: an HTTP server for open-vocabulary action recognition (LitServe, the ``serve`` extra).

    tc-clip serve --model exported/demo [--class_names names.txt] [--host 127.0.0.1] [--port 8000]
                  [--max_batch_size 8] [--batch_timeout 0.05] [--devices auto]
    curl -F video=@clip.mp4 -F top_k=3 http://127.0.0.1:8000/predict

``--model`` takes a model folder (``tc-clip export``), a Hub repo id, a fit checkpoint, a ``TCCLIP.save`` file
or a release checkpoint (with ``--clip_weights``). The server binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tc_clip.cli.errors import Parser, UsageError
from tc_clip.cli.export import run


def _devices(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive number of devices, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 1024 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1024 to 65535, got {text!r}")
    return int(text)


def parser() -> Parser:
    p = Parser(prog="tc-clip serve", description=__doc__.split("\n\n")[0], allow_abbrev=False,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model folder, Hub repo id, .ckpt, TCCLIP.save file or release .pth")
    p.add_argument("--class_names", help="default vocabulary: names.txt (one a line), labels.csv (id,name) or "
                   "names.json (a list); default: the model's saved class names")
    p.add_argument("--clip_weights", help="CLIP's weights, for a release checkpoint")
    p.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1", "0.0.0.0", "::"),
                   help="127.0.0.1 (default: this machine only), 0.0.0.0 or :: (every interface)")
    p.add_argument("--port", type=_port, default=8000)
    p.add_argument("--max_batch_size", type=int, default=8, help="requests batched into one forward (1: off)")
    p.add_argument("--batch_timeout", type=float, default=0.05, help="seconds a batch waits to fill")
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--devices", type=_devices, default="auto", help="'auto' or the number of devices")
    p.add_argument("--vocabulary_cache", type=int, default=16, help="vocabularies whose text states are kept")
    p.add_argument("--max_upload_mb", type=float, default=200.0)
    p.add_argument("--max_duration_s", type=float, default=600.0)
    p.add_argument("--max_classes", type=int, default=1000)
    p.add_argument("--max_name_chars", type=int, default=200)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds a request may wait for its answer")
    p.add_argument("--log_level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        from tc_clip.serve.server import build_server, serve
    except ImportError as err:
        raise ImportError(f"tc-clip serve needs LitServe: pip install 'tc-clip[serve]' ({err})") from err
    from tc_clip.data.annotations import read_class_list
    from tc_clip.serve.limits import ServeLimits

    try:
        limits = ServeLimits(args.max_upload_mb, args.max_duration_s, args.max_classes, args.max_name_chars)
    except ValueError as err:
        raise UsageError(f"serve: {err}") from None
    names = read_class_list(args.class_names) if args.class_names else None
    server = build_server(args.model, names, limits, args.clip_weights, args.max_batch_size, args.batch_timeout,
                          args.accelerator, args.devices, args.vocabulary_cache, args.timeout)
    print(f"tc-clip serve: {args.model} on http://{args.host}:{args.port} (POST /predict, GET /health, GET /info)",
          flush=True)
    serve(server, args.host, args.port, args.log_level)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tc-clip serve``; returns the exit status."""
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
