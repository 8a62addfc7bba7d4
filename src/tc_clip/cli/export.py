"""``tc-clip export``: a fit checkpoint, a ``TCCLIP.save`` file, a release checkpoint or a model folder ->
a model folder (``config.json`` + ``model.safetensors`` + ``README.md``), optionally with ``model.onnx``,
optionally uploaded to the Hugging Face Hub.

    tc-clip export --model runs/demo/version_0/checkpoints/best.ckpt --output_dir exported/demo
    tc-clip export --model best.ckpt --clip_weights ViT-B-16.pt --wise_ratio 0.5 --output_dir exported/wise05
    tc-clip export --model zero_shot_k400_tc_clip.pth --clip_weights ViT-B-16.pt --output_dir exported/k400 \
                   --class_names k400_labels.csv
    tc-clip export --model exported/demo --output_dir exported/demo-onnx --format onnx
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tc_clip.cli.errors import Parser, UsageError

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError, RuntimeError, TypeError)


def run(main, argv: Sequence[str] | None) -> int:
    """Run ``main(argv)``: a usage error exits 2, a user error 1, each as one ``tc-clip: error:`` line."""
    try:
        return int(main(list(sys.argv[1:] if argv is None else argv)) or 0)
    except UsageError as err:
        print(f"tc-clip: error: {err}", file=sys.stderr)
        return 2
    except USER_ERRORS as err:
        print(f"tc-clip: error: {err}", file=sys.stderr)
        return 1


def parser() -> Parser:
    p = Parser(prog="tc-clip export", description=__doc__.split("\n\n")[0], allow_abbrev=False,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="best.ckpt / last.ckpt of tc-clip fit, a TCCLIP.save file, a "
                   "release .pth (needs --clip_weights) or a model folder")
    p.add_argument("--output_dir", required=True, help="the model folder to write (new or empty)")
    p.add_argument("--clip_weights", help="CLIP's weights (OpenAI ViT-B-16.pt): for a release checkpoint and WiSE-FT")
    p.add_argument("--wise_ratio", type=float, help="bake WiSE-FT in: (1-a)*CLIP + a*fine-tuned, a in [0, 1]")
    p.add_argument("--class_names", help="replace the vocabulary: names.txt (one a line), labels.csv (id,name) "
                   "or names.json (a list)")
    p.add_argument("--model_name", default="ViT-B-16", help="open_clip architecture of a release checkpoint")
    p.add_argument("--pretrained", help="a fit checkpoint's CLIP weights file, when it moved since training")
    p.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors",
                   help="onnx: also write model.onnx, the evaluation forward for the fixed vocabulary")
    p.add_argument("--check_onnx", action="store_true", help="compare model.onnx with PyTorch (needs onnxruntime)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --output_dir")
    p.add_argument("--push_to_hub", metavar="REPO_ID", help="then upload the folder to this Hub repo (owner/name)")
    p.add_argument("--private", action="store_true", help="with --push_to_hub: create the repo private")
    return p


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from tc_clip.data.annotations import read_class_list
    from tc_clip.export import check_onnx, export_model

    names = read_class_list(args.class_names) if args.class_names else None
    kwargs = {"pretrained": args.pretrained} if args.pretrained else {}
    out = export_model(args.model, args.output_dir, clip_weights=args.clip_weights, wise_ratio=args.wise_ratio,
                       class_names=names, model_name=args.model_name, onnx=args.format == "onnx",
                       overwrite=args.overwrite, **kwargs)
    print(f"wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    if args.check_onnx:
        if args.format != "onnx":
            raise UsageError("export: --check_onnx needs --format onnx")
        print(f"model.onnx matches PyTorch: largest logit difference {check_onnx(out):.2e}")
    if args.push_to_hub:
        from tc_clip.model.pretrained import push_folder

        print(f"uploaded: {push_folder(out, args.push_to_hub, private=args.private or None)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tc-clip export``; returns the exit status."""
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
