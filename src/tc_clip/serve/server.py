"""The HTTP side of ``tc-clip serve``: a :class:`litserve.LitServer` whose ``POST /predict`` reads and checks
the multipart form in the API process, so a bad request is answered (4xx, ``{"detail": ...}``) without
reaching the model, and only plain data (the upload's bytes, the names, ``top_k``) crosses to the workers.

``POST /predict`` fields: ``video`` (the file, required), ``class_names`` (repeated, or one JSON list;
replaces the default vocabulary for this request), ``top_k``. Nothing else is accepted: the server reads
uploads only, never a path a client names. ``GET /health`` answers ``ok`` once the workers are ready,
``GET /info`` describes the model, its switches, the default vocabulary and the limits.
"""

from __future__ import annotations

import gc
import os
import signal
from typing import Any

import litserve as ls
from fastapi import Depends, HTTPException, Request, Response
from litserve.callbacks.base import EventTypes
from litserve.server import RegularRequestHandler
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from tc_clip.serve.api import TCCLIPAPI, load_served_model
from tc_clip.serve.limits import FIELDS, RequestError, ServeLimits, VocabularyCheck, parse_class_names, parse_top_k

__all__ = ["FormReader", "build_server", "model_info", "serve"]

#: room for the multipart framing and the text fields on top of the upload limit
_FORM_OVERHEAD = 1 << 20


class FormReader:
    """Reads one ``/predict`` form into ``{"video", "filename", "class_names", "top_k"}`` or raises a 4xx."""

    def __init__(self, limits: ServeLimits, check: VocabularyCheck, has_default_vocabulary: bool) -> None:
        self.limits, self.check, self.has_default = limits, check, has_default_vocabulary

    async def __call__(self, request: Request) -> dict[str, Any]:
        try:
            return await self._read(request)
        except RequestError as err:
            raise HTTPException(err.status, err.message) from None
        except StarletteHTTPException as err:  # the multipart parser's own refusals
            raise HTTPException(err.status_code, f"malformed multipart form: {err.detail}") from None

    async def _read(self, request: Request) -> dict[str, Any]:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise RequestError(415, "send a multipart/form-data upload: the file in field 'video' "
                                    "(curl -F video=@clip.mp4 ...)")
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise RequestError(411, "the request must declare its Content-Length")
        if int(length) > self.limits.max_upload_bytes + _FORM_OVERHEAD:
            raise RequestError(413, f"the upload is larger than the limit of {self.limits.max_upload_mb:g} MB")
        form = await request.form(max_files=1, max_fields=self.limits.max_classes + len(FIELDS))
        try:
            unknown = sorted(set(form.keys()) - set(FIELDS))
            if unknown:
                raise RequestError(400, f"unknown form field {unknown[0]!r}: the fields are {', '.join(FIELDS)} "
                                        "(the server reads uploaded files only, never a path)")
            videos = form.getlist("video")
            if len(videos) != 1 or not isinstance(videos[0], UploadFile):
                raise RequestError(400, "send exactly one file in the form field 'video'")
            upload = videos[0]
            if upload.size is not None and upload.size > self.limits.max_upload_bytes:
                raise RequestError(413, f"the upload is larger than the limit of {self.limits.max_upload_mb:g} MB")
            texts = {k: list(form.getlist(k)) for k in ("class_names", "top_k")}
            if any(not isinstance(v, str) for vs in texts.values() for v in vs):
                raise RequestError(400, "class_names and top_k are text fields, not files")
            names = parse_class_names(texts["class_names"], self.limits)
            if names is not None:
                self.check(names)
            elif not self.has_default:
                raise RequestError(400, "this server has no default vocabulary: send class_names")
            top_k = parse_top_k(texts["top_k"], self.limits)
            data = await upload.read()
            if len(data) > self.limits.max_upload_bytes:
                raise RequestError(413, f"the upload is larger than the limit of {self.limits.max_upload_mb:g} MB")
            return {"video": data, "filename": upload.filename or "", "class_names": names, "top_k": top_k}
        finally:
            await form.close()


class _UploadHandler(RegularRequestHandler):
    def __init__(self, lit_api: ls.LitAPI, server: ls.LitServer, reader: FormReader) -> None:
        super().__init__(lit_api, server)
        self.reader = reader

    async def _prepare_request(self, request: Request, request_type: Any) -> dict[str, Any]:
        return await self.reader(request)


class UploadServer(ls.LitServer):
    """LitServer whose API endpoint reads uploads with a :class:`FormReader`."""

    def __init__(self, lit_api: TCCLIPAPI, reader: FormReader, **kwargs: Any) -> None:
        self._reader = reader  # set first: LitServer registers the endpoints while it is built
        super().__init__(lit_api, **kwargs)

    def _register_api_endpoints(self, lit_api: ls.LitAPI, request_type: Any, response_type: Any) -> None:
        self._callback_runner.trigger_event(EventTypes.ON_SERVER_START.value, litserver=self)
        handler = _UploadHandler(lit_api, self, self._reader)

        async def predict(request: Request) -> Response:
            return await handler.handle_request(request, Request)

        self.app.add_api_route(lit_api.api_path, predict, methods=["POST"],
                               dependencies=[Depends(self.setup_auth(lit_api))])


def model_info(model: Any, source: str, limits: ServeLimits, batching: dict[str, Any]) -> dict[str, Any]:
    """What ``GET /info`` says under ``model``."""
    names = model.class_names
    return {
        "source": source,
        "switches": model.config.to_dict(),
        "clip": model.clip_cfg,
        "input": {"frames": model.config.num_frames, "size": int(model.visual.image_size[0])},
        "default_vocabulary_size": len(names),
        "default_vocabulary": names,
        "provenance": getattr(model, "provenance", None) or {},
        "limits": limits.as_dict(),
        "batching": batching,
    }


def build_server(
    model: str,
    class_names: list[str] | None = None,
    limits: ServeLimits | None = None,
    clip_weights: str | None = None,
    max_batch_size: int = 8,
    batch_timeout: float = 0.05,
    accelerator: str = "auto",
    devices: int | str = "auto",
    cache_size: int = 16,
    timeout: float = 120.0,
) -> UploadServer:
    """Load ``model`` once here (a broken model fails now, not in a worker), then the server; its workers
    load their own copy."""
    limits = limits or ServeLimits()
    if max_batch_size < 1 or batch_timeout < 0 or timeout <= 0:
        raise ValueError("max_batch_size must be >= 1, batch_timeout >= 0 and timeout > 0")
    probe = load_served_model(model, clip_weights)
    if class_names:
        probe.set_class_names(class_names)  # a name the model refuses is refused here, by name
    batching = {"max_batch_size": max_batch_size, "batch_timeout": batch_timeout, "vocabulary_cache": cache_size}
    info = model_info(probe, model, limits, batching)
    check = VocabularyCheck(probe.config.n_ctx, probe.config.prompt_template, probe.config.context_length)
    reader = FormReader(limits, check, bool(probe.class_names))
    del probe
    gc.collect()
    api = TCCLIPAPI(model, class_names, limits, clip_weights, cache_size, max_batch_size, batch_timeout)
    return UploadServer(api, reader, accelerator=accelerator, devices=devices, timeout=timeout,
                        model_metadata=info)


def serve(server: UploadServer, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run until interrupted; SIGTERM shuts down as cleanly as Ctrl+C (workers stopped, port freed)."""

    owner = os.getpid()

    def stop(signum: int, frame: Any) -> None:
        if os.getpid() != owner:  # a forked API process inherited this handler: die as SIGTERM says
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM (e.g. from a wrapper too) must not break the shutdown
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.run(host=host, port=port, log_level=log_level, generate_client_file=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
