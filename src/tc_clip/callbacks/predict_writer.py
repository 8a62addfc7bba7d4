"""Write ``tc-clip predict`` results (top-k class names and scores per video) to CSV or JSON."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info


class PredictionWriter(Callback):
    """Collects what :meth:`TCCLIPModule.predict_step` returns and writes one file at the end.

    Args:
        output_path: file to write; ``None`` → ``<log dir>/predictions.<format>`` (the log dir is the
            logger's version folder, or ``trainer.default_root_dir`` without logger). A relative path is
            relative to the working directory.
        format: ``"csv"`` or ``"json"``; ``None`` → from the file extension (default CSV).

    CSV columns: ``path, index, label, label_name, skipped, pred_1, score_1, …, pred_k, score_k``.
    JSON: a list of objects ``{"path", "index", "label", "label_name", "skipped", "predictions":
    [{"class": name, "class_id": id, "score": p}, …]}``. Scores are the mean softmax over views.
    Under DDP every process's rows are gathered and rank 0 writes them, in dataset-index order.
    """

    def __init__(self, output_path: str | None = None, format: Literal["csv", "json"] | None = None) -> None:
        super().__init__()
        self.output_path = output_path
        self.format = format
        self._rows: list[dict[str, Any]] = []
        self.written_path: str | None = None

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows = []

    def on_predict_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if outputs:
            self._rows.extend(outputs)

    def _resolve_path(self, trainer: L.Trainer) -> tuple[str, str]:
        fmt = self.format
        path = self.output_path
        if path is None:
            fmt = fmt or "csv"
            folder = trainer.log_dir if trainer.loggers else trainer.default_root_dir
            path = os.path.join(folder or ".", f"predictions.{fmt}")
        if fmt is None:
            fmt = "json" if str(path).lower().endswith(".json") else "csv"
        return str(path), fmt

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = self._rows
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[list[dict]] = [None] * dist.get_world_size()  # type: ignore[list-item]
            dist.all_gather_object(gathered, rows)
            rows = [r for part in gathered for r in part]
        path, fmt = self._resolve_path(trainer)
        path = trainer.strategy.broadcast(path)
        if not trainer.is_global_zero:
            return
        rows = _dedupe(rows)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if fmt == "json":
            write_json(path, rows)
        else:
            write_csv(path, rows)
        self.written_path = path
        rank_zero_info(f"predictions of {len(rows)} videos written to {path}")


def _dedupe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not rows or any(r.get("index") is None for r in rows):
        return rows
    seen: dict[int, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(int(r["index"]), r)
    return [seen[i] for i in sorted(seen)]


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """One line per video (see :class:`PredictionWriter`)."""
    k = max((len(r["classes"]) for r in rows), default=0)
    header = ["path", "index", "label", "label_name", "skipped"]
    for i in range(1, k + 1):
        header += [f"pred_{i}", f"score_{i}"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for r in rows:
            line = [r.get("path"), r.get("index"), r.get("label"), r.get("label_name")]
            line.append(int(bool(r.get("skipped"))))
            for name, score in zip(r["classes"], r["scores"], strict=True):
                line += [name, f"{score:.6f}"]
            writer.writerow(line)


def write_json(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """A JSON list (see :class:`PredictionWriter`)."""
    out = []
    for r in rows:
        out.append(
            {
                "path": r.get("path"),
                "index": r.get("index"),
                "label": r.get("label"),
                "label_name": r.get("label_name"),
                "skipped": bool(r.get("skipped")),
                "predictions": [
                    {"class": c, "class_id": i, "score": s}
                    for c, i, s in zip(r["classes"], r["class_ids"], r["scores"], strict=True)
                ],
            }
        )
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
