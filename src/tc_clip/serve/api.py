"""The LitServe API of ``tc-clip serve``: uploads in, top-k class names out, requests batched dynamically.

Each request arrives as a plain dict (see :mod:`tc_clip.serve.server`, which reads and checks the form):
``{"video": bytes, "filename": str, "class_names": [...] | None, "top_k": int}``. One bad request never
fails the batch it is in: its decoding error travels as a :class:`Failure` and becomes its own 4xx answer.
Within a batch the requests sharing a vocabulary go through the model in one forward pass; every answer
is what :func:`tc_clip.inference.predict` gives for the same file and names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import litserve as ls
import torch
from fastapi.responses import JSONResponse

from tc_clip.serve.limits import RequestError, ServeLimits
from tc_clip.serve.video import Clip, read_upload

__all__ = ["Failure", "TCCLIPAPI", "load_served_model"]


@dataclass
class Failure:
    """A request that cannot be answered: the HTTP status and the reason."""

    status: int
    message: str


@dataclass
class Item:
    clip: Clip
    names: tuple[str, ...]
    top_k: int
    filename: str = ""


def load_served_model(source: str, clip_weights: str | None = None, map_location: str = "cpu"):
    """The model behind ``--model``: a model folder, a Hub repo id, or a file :func:`tc_clip.inference.load_model`
    reads (a release checkpoint also needs ``clip_weights``)."""
    from tc_clip.inference import load_model
    from tc_clip.model import TCCLIP

    path = os.path.expanduser(source)
    if os.path.exists(path):
        kwargs = {"clip_weights": clip_weights} if clip_weights else {}
        return load_model(path, map_location=map_location, **kwargs).eval()
    return TCCLIP.from_pretrained(source, map_location=map_location)


class TCCLIPAPI(ls.LitAPI):
    """Loads the model in each worker (``setup``), decodes uploads, batches, predicts."""

    def __init__(
        self,
        model: str,
        class_names: list[str] | None = None,
        limits: ServeLimits | None = None,
        clip_weights: str | None = None,
        cache_size: int = 16,
        max_batch_size: int = 8,
        batch_timeout: float = 0.05,
        **kwargs: Any,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, **kwargs)
        self.source = model
        self.class_names = list(class_names) if class_names else None
        self.limits = limits or ServeLimits()
        self.clip_weights = clip_weights
        self.cache_size = cache_size

    def setup(self, device: str) -> None:
        from tc_clip.serve.vocab import VocabularyCache

        self.model = load_served_model(self.source, self.clip_weights, map_location=device)
        if self.class_names:
            self.model.set_class_names(self.class_names)
        self.default_names = tuple(self.model.class_names)
        self.vocabulary = VocabularyCache(self.model, self.cache_size)
        self.num_frames = self.model.config.num_frames
        self.size = int(self.model.visual.image_size[0])

    def decode_request(self, request: dict[str, Any], **kwargs: Any) -> Item | Failure:
        names = tuple(request.get("class_names") or self.default_names)
        if not names:
            return Failure(400, "this server has no default vocabulary: send class_names")
        try:
            clip = read_upload(request["video"], self.num_frames, self.size, self.limits.max_duration_s,
                               name=repr(request.get("filename") or "the upload"))
        except RequestError as err:
            return Failure(err.status, err.message)
        return Item(clip, names, int(request.get("top_k") or self.limits.default_top_k), request.get("filename", ""))

    def batch(self, inputs: list[Item | Failure]) -> list[Item | Failure]:
        return list(inputs)

    @torch.inference_mode()
    def _run_group(self, names: tuple[str, ...], items: list[Item]) -> list[dict[str, Any] | Failure]:
        try:
            self.vocabulary.use(names)
        except ValueError as err:  # names the front end's check let through but the model refuses
            return [Failure(400, f"class_names: {err}")] * len(items)
        param = next(self.model.parameters())
        video = torch.cat([it.clip.video for it in items]).to(device=param.device, dtype=param.dtype)
        probs = self.model(video).float().softmax(dim=-1).cpu()
        self.vocabulary.done()
        out: list[dict[str, Any] | Failure] = []
        for it, p in zip(items, probs, strict=True):
            scores, idx = p.topk(min(it.top_k, len(names)))
            out.append({
                "predictions": [{"name": names[i], "score": float(s)}
                                for s, i in zip(scores.tolist(), idx.tolist(), strict=True)],
                "frame_indices": it.clip.frame_indices,
                "num_frames": it.clip.num_frames,
                "duration_s": it.clip.duration_s,
                "num_classes": len(names),
            })
        return out

    def predict(self, x: Any, **kwargs: Any) -> Any:
        single = not isinstance(x, list)
        items = [x] if single else x
        results: list[Any] = list(items)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, it in enumerate(items):
            if isinstance(it, Item):
                groups.setdefault(it.names, []).append(i)
        for names, positions in groups.items():
            for pos, result in zip(positions, self._run_group(names, [items[p] for p in positions]), strict=True):
                results[pos] = result
        return results[0] if single else results

    def unbatch(self, output: list[Any]) -> list[Any]:
        return list(output)

    def encode_response(self, output: Any, **kwargs: Any) -> Any:
        if isinstance(output, Failure):
            return JSONResponse(status_code=output.status, content={"detail": output.message})
        return output
