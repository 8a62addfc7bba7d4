"""The model card (``README.md``) of a model folder, written from its ``config.json`` alone, so that a
folder re-saved anywhere gets the same card: architecture, switches, vocabulary, training protocol and
data, evaluation figures (when the run had them) and the licence question."""

from __future__ import annotations

from typing import Any

_SHOWN_NAMES = 60

_LICENCE = (
    "tc-clip does not decide the licence of these weights; check before redistributing them. The tc-clip code "
    "is Apache-2.0. Weights fine-tuned from OpenAI's CLIP derive from weights OpenAI released under the MIT "
    "licence, and a model converted from a checkpoint released by the TC-CLIP authors also falls under the "
    "terms of that release. The training videos (e.g. Kinetics, HMDB51, UCF101, Something-Something v2) come "
    "with their own terms of use."
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"`{value:g}`"
    return "`null`" if value is None else f"`{value}`"


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _architecture(clip: dict[str, Any], config: dict[str, Any]) -> list[str]:
    vision, text = clip.get("vision_cfg", {}), clip.get("text_cfg", {})
    size = vision.get("image_size", "?")
    return [
        "## Architecture",
        "",
        "TC-CLIP (Temporally Contextualized CLIP, ECCV 2024) on an open_clip CLIP:",
        "",
        f"- vision: ViT, {vision.get('layers', '?')} layers, width {vision.get('width', '?')}, "
        f"{vision.get('patch_size', '?')}x{vision.get('patch_size', '?')} patches, {size}x{size} frames",
        f"- text: {text.get('layers', '?')} layers, width {text.get('width', '?')}, {text.get('heads', '?')} heads; "
        f"joint embedding {clip.get('embed_dim', '?')}; QuickGELU {'on' if clip.get('quick_gelu') else 'off'}",
        f"- input: {config.get('num_frames', '?')} frames of {size}x{size}, normalised as CLIP's images",
        f"- Temporal Contextualization {'on' if config.get('use_tc') else 'off'}, Video-conditional Prompting "
        f"{'on' if config.get('use_vp') else 'off'}",
        "",
    ]


def _switches(config: dict[str, Any]) -> list[str]:
    rows = ["## Switches", "", "| switch | value |", "| --- | --- |"]
    rows += [f"| {k} | {_fmt(v)} |" for k, v in config.items()]
    return [*rows, ""]


def _vocabulary(names: list[str]) -> list[str]:
    if not names:
        return ["## Class vocabulary", "", "None saved: give class names at prediction time (any free text).", ""]
    shown = ", ".join(names[:_SHOWN_NAMES]) + (f", ... ({len(names)} in all)" if len(names) > _SHOWN_NAMES else "")
    return ["## Class vocabulary", "",
            f"{len(names)} classes (the default vocabulary; any free-text names can replace it): {shown}.",
            "The full list is `class_names` in `config.json`.", ""]


def _training(prov: dict[str, Any]) -> list[str]:
    training = prov.get("training") or {}
    lines = ["## Training protocol and data", ""]
    if not training:
        lines.append("Not recorded (the weights did not come from a tc-clip run folder with a config.yaml).")
        return [*lines, ""]
    lines += [f"- {key}: {_fmt(value)}" for key, value in training.items()]
    return [*lines, ""]


def _evaluation(prov: dict[str, Any]) -> list[str]:
    record = prov.get("evaluation") or {}
    sets = record.get("sets") or []
    lines = ["## Evaluation", ""]
    if not sets:
        lines.append("No evaluation figures were recorded with these weights.")
        return [*lines, ""]
    lines.append(f"From the run's `eval_results.jsonl`: the {record.get('stage', '?')} record of epoch "
                 f"{record.get('epoch', '?')} ({record.get('selected', 'as recorded')}). Top-1/top-5 in %, one "
                 "evaluation per video as configured in the run (views, crops).")
    lines += ["", "| set | top-1 | top-5 | videos |", "| --- | --- | --- | --- |"]
    lines += [f"| {s.get('name', '?')} | {_pct(s.get('top1'))} | {_pct(s.get('top5'))} | {s.get('videos', '-')} |"
              for s in sets]
    return [*lines, ""]


def _provenance(prov: dict[str, Any]) -> list[str]:
    keys = [k for k in prov if k not in ("training", "evaluation")]
    if not keys:
        return []
    return ["## Provenance", "", *[f"- {k}: {_fmt(prov[k])}" for k in keys], ""]


def model_card(config: dict[str, Any]) -> str:
    """Markdown (with the Hub's YAML header) for a ``config.json`` dict."""
    prov = config.get("provenance") or {}
    switches, clip = config.get("config") or {}, config.get("clip") or {}
    size = (clip.get("vision_cfg") or {}).get("image_size", 224)
    lines = [
        "---",
        "library_name: tc-clip",
        "license: other",
        "pipeline_tag: video-classification",
        "tags: [video-classification, action-recognition, zero-shot, clip, tc-clip]",
        "---",
        "",
        "# TC-CLIP video action recognition model",
        "",
        f"Saved by tc-clip {config.get('tc_clip_version', '?')}: `config.json` (every switch, the CLIP "
        "architecture, the class names, provenance) and `model.safetensors`. Loading it runs no code from the files.",
        "",
        "```python",
        "from tc_clip import TCCLIP, inference",
        "",
        'model = TCCLIP.from_pretrained("THIS_FOLDER_OR_REPO_ID")',
        f'video, _ = inference.read_clip("video.mp4", num_frames={switches.get("num_frames", 16)}, size={size})',
        'print(inference.predict(model, video, ["juggling balls", "riding a bike"], top_k=2))',
        "```",
        "",
        "Serve it over HTTP: `tc-clip serve --model THIS_FOLDER_OR_REPO_ID`.",
        "",
        *_architecture(clip, switches),
        *_switches(switches),
        *_vocabulary(list(config.get("class_names") or [])),
        *_training(prov),
        *_evaluation(prov),
        *_provenance(prov),
        "## Licence",
        "",
        _LICENCE,
        "",
    ]
    return "\n".join(lines)
