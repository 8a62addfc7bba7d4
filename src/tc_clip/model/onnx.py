"""ONNX export of the evaluation forward for a fixed vocabulary (``tc-clip export --format onnx``).

The graph takes ``video`` (float32 ``[B, T, 3, S, S]``, normalised as for the PyTorch model; ``B`` is
dynamic) and returns ``logits [B, C]`` for the vocabulary fixed at export. The class-prompt text states
that do not depend on the video are computed once and stored in the graph as constants; with
Video-conditional Prompting the text layers from the first VP layer on stay in the graph.

Every switch exports (checked against PyTorch with onnxruntime: joint or space positional table, TC and
VP on or off, seed selection, VP tokens and layers, bipartite, k-means or no aggregation) except those in
:data:`NOT_EXPORTABLE`, which :func:`check_exportable` refuses by name.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from tc_clip.model.tcclip import TCCLIP

__all__ = ["NOT_EXPORTABLE", "ONNX_FILE", "OPSET", "check_exportable", "export_onnx", "onnx_logits"]

ONNX_FILE = "model.onnx"
OPSET = 18
#: (switch, value) -> why its evaluation forward is not exported
NOT_EXPORTABLE: dict[tuple[str, str], str] = {
    ("aggregation", "random"): "random grouping draws new groups on every call: no fixed graph gives its answers",
    ("aggregation", "tube"): "tube pooling reads its group count from a tensor value, which torch.export cannot trace",
}


def check_exportable(model: TCCLIP) -> None:
    """Raise a ``ValueError`` naming every switch of ``model`` the ONNX export does not cover."""
    bad = [f"{name}={value!r} ({why})" for (name, value), why in NOT_EXPORTABLE.items()
           if getattr(model.config, name) == value]
    if bad:
        raise ValueError("the ONNX export covers the evaluation forward of the default configuration and its "
                         f"deterministic variants; not: {'; '.join(bad)}. Export the model folder "
                         "(config.json + model.safetensors, the default format) instead")


class FixedVocabulary(nn.Module):
    """The evaluation forward of ``model`` with the text states of its current vocabulary precomputed."""

    def __init__(self, model: TCCLIP) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        stop = self.model.vp_layers[0] if self.model.vp_layers else len(self.model.transformer.resblocks)
        with torch.no_grad():
            prefix, eot = self.model._text_prefix(stop)
        self.register_buffer("text_prefix", prefix.detach().clone())
        self.register_buffer("text_eot", eot.detach().clone())
        self.model._cached_prefix = self._prefix  # the constants above replace the per-call text encoding

    def _prefix(self, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.text_prefix, self.text_eot

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model(video)


def _sort_stable(self: Any, stable: bool | None = None, dim: int = -1, descending: bool = False):
    """``aten.sort.stable`` as ONNX TopK, which breaks ties by the lower index (a stable sort)."""
    from onnxscript import opset18 as op

    size = op.Reshape(op.Gather(op.Shape(self), dim, axis=0), op.Constant(value_ints=[1]))
    values, indices = op.TopK(self, size, axis=dim, largest=descending, sorted=True)
    return values, indices


def export_onnx(model: TCCLIP, path: str | os.PathLike, example_batch: int = 2) -> dict[str, Any]:
    """Write ``model``'s evaluation forward for its current vocabulary to ``path``; returns what
    ``config.json`` records about it. Needs the ``onnx`` and ``onnxscript`` packages."""
    check_exportable(model)
    if not model.class_names:
        raise ValueError("the ONNX graph fixes the vocabulary: give class names (--class_names) to export")
    try:
        import onnxscript  # noqa: F401 - torch's exporter needs it
    except ImportError as err:
        raise ImportError("the ONNX export needs the onnx and onnxscript packages: "
                          "pip install 'tc-clip[onnx]'") from err
    wrapped = FixedVocabulary(model).cpu().float().eval()
    size = model.visual.image_size
    example = torch.zeros(example_batch, model.config.num_frames, 3, size[0], size[1])
    batch = torch.export.Dim("batch", min=1, max=4096)
    path = Path(path)
    program = torch.onnx.export(
        wrapped, (example,), input_names=["video"], output_names=["logits"], dynamic_shapes={"video": {0: batch}},
        dynamo=True, opset_version=OPSET, custom_translation_table={torch.ops.aten.sort.stable: _sort_stable},
        verbose=False,
    )
    program.save(str(path))
    return {"file": path.name, "opset": OPSET, "input": "video [batch, frames, 3, height, width] float32",
            "output": "logits [batch, classes]", "class_names": model.class_names}


def onnx_logits(path: str | os.PathLike, video: torch.Tensor) -> torch.Tensor:
    """Run an exported graph with onnxruntime (CPU) on ``video``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"video": video.detach().cpu().float().numpy()})[0])
