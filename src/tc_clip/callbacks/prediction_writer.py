"""Write ``tc-clip predict`` results (top-k class names and scores per video) to CSV or JSON."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import IO, Any, Literal

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import Subset


class PredictionWriter(Callback):
    """Writes what :meth:`TCCLIPModule.predict_step` returns, batch by batch, so that a killed ``predict``
    keeps every finished row, a rerun of the same prediction computes only the videos left, and a rerun of a
    finished one computes nothing (it says where the complete file is).

    Args:
        output_path: file to write; ``None`` → ``<log dir>/predictions.<format>`` (the log dir is the
            logger's version folder, or ``trainer.default_root_dir`` without logger). A relative path is
            relative to the working directory.
        format: ``"csv"`` or ``"json"``; ``None`` → from the file extension (default CSV).
        resume: continue an interrupted run of the same prediction; without ``output_path`` the newest such
            run under ``trainer.default_root_dir`` is continued in its own folder. ``False`` always starts afresh.
        redo: compute a finished prediction again (``tc-clip predict --redo true``).

    "The same prediction" is a fingerprint of the model's weights (a hash of the restored weights, with the
    checkpoint's path), its vocabulary (the class names it scores against), ``predict_top_k`` and the other
    model arguments, every data option of the data module (frames, size, views, crops, ...) and the list
    of videos. It is taken in ``on_predict_start``, once Lightning has restored the checkpoint and set
    ``trainer.ckpt_path``. Rows of another fingerprint are never appended to: a file of another prediction
    at the same path is started afresh.

    CSV columns: ``path, index, label, label_name, skipped, pred_1, score_1, …, pred_k, score_k``.
    JSON: a list of objects ``{"path", "index", "label", "label_name", "skipped", "predictions":
    [{"class": name, "class_id": id, "score": p}, …]}``. Scores are the mean softmax over views.
    While running, every finished batch is appended (and flushed) to ``<file>.progress.jsonl`` and, for
    CSV, to the file itself; at the end the file is rewritten in dataset-index order, the progress file
    removed (so its presence marks an unfinished run) and ``<file>.done.json`` written with the fingerprint
    (it marks a finished one). Under DDP every process's rows are gathered after each batch and rank 0
    writes them.
    """

    def __init__(
        self, output_path: str | None = None, format: Literal["csv", "json"] | None = None, resume: bool = True,
        redo: bool = False,
    ) -> None:
        super().__init__()
        self.output_path = output_path
        self.format = format
        self.resume = resume
        self.redo = redo
        self.written_path: str | None = None
        self.complete = False
        self._path: str | None = None
        self._fmt = "csv"
        self._fingerprint = ""
        self._rows: list[dict[str, Any]] = []
        self._progress: IO[str] | None = None
        self._csv: IO[str] | None = None
        self._header_k: int | None = None

    # ------------------------------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "predict":
            self._rows, self._header_k, self.written_path, self.complete = [], None, None, False
            self._path, self._fmt = self._resolve_path(trainer)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datasets = _predict_datasets(trainer)
        self._fingerprint = fingerprint = _fingerprint(trainer, pl_module, datasets)
        path = self._path
        if self.resume and not self.redo:
            path, self._rows, self.complete = self._previous(trainer, str(path), fingerprint)
        self._path = trainer.strategy.broadcast(path)
        if self.complete:
            if datasets:
                datasets[0] = Subset(datasets[0], [])
                warnings.filterwarnings("ignore", message="Total length of `DataLoader` across ranks is zero")
                _reload_predict_loader(trainer)
            return
        if self._rows and datasets:
            self._skip_done(datasets)
            _reload_predict_loader(trainer)
        if trainer.is_global_zero:
            self._open(fingerprint)

    def on_predict_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        rows = list(outputs or [])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[list[dict]] = [None] * dist.get_world_size()  # type: ignore[list-item]
            dist.all_gather_object(gathered, rows)
            rows = [r for part in gathered for r in part]
        if trainer.is_global_zero and rows:
            self._append(rows)

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and not self.complete:
            self._finish()

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.complete and trainer.is_global_zero:
            self.written_path = self._path
            print(f"predict: complete already: {self._path} holds this prediction ({len(self._rows)} videos); "
                  "nothing computed (tc-clip predict --redo true computes it again)")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "predict" and trainer.is_global_zero:
            self._close()

    # ---------------------------------------------------------------------------------- files
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

    def _previous(
        self, trainer: L.Trainer, path: str, fingerprint: str
    ) -> tuple[str, list[dict[str, Any]], bool]:
        """``(path, rows done, complete)``: a finished file of this prediction, else an unfinished one (its
        rows), else ``path`` afresh."""
        candidates = [Path(path)]
        if self.output_path is None:  # each run has its own version folder: look at the earlier ones
            root = Path(trainer.default_root_dir or ".")
            name = Path(path).name
            earlier = [*root.glob(f"version_*/{name}{DONE}"), *root.glob(f"version_*/{name}{PROGRESS}")]
            candidates += sorted(earlier, key=lambda p: p.stat().st_mtime, reverse=True)
        for cand in candidates:
            target = str(cand).removesuffix(PROGRESS).removesuffix(DONE)
            done = read_done(target + DONE, fingerprint)
            if done is not None and os.path.isfile(target):
                return target, done, True
            rows = read_progress(target + PROGRESS, fingerprint)
            if rows:
                rank_zero_info(f"predict: continuing {target} ({len(rows)} videos already done)")
                return target, rows, False
        return path, [], False

    def _skip_done(self, datasets: list[Any]) -> None:
        ds = datasets[0]
        samples = getattr(ds, "samples", None)
        if samples is not None:  # an index whose video changed is not done
            done = {(r.get("index"), r.get("path")) for r in self._rows}
            keep = [i for i in range(len(ds)) if (i, samples[i].path) not in done]
        else:
            done_idx = {r.get("index") for r in self._rows}
            keep = [i for i in range(len(ds)) if i not in done_idx]
        datasets[0] = Subset(ds, keep)

    def _open(self, fingerprint: str) -> None:
        """Start the progress file (and the CSV) with the rows already done; replaced atomically, so a kill
        here loses nothing."""
        path = Path(self._path)  # type: ignore[arg-type]
        path.parent.mkdir(parents=True, exist_ok=True)
        progress = str(path) + PROGRESS
        with open(progress + ".tmp", "w") as f:
            f.write(json.dumps({"fingerprint": fingerprint}) + "\n")
            f.writelines(json.dumps(r) + "\n" for r in self._rows)
        os.replace(progress + ".tmp", progress)
        self._progress = open(progress, "a")
        if self._fmt == "csv":
            if self._rows:
                write_csv(str(path) + ".tmp", self._rows)
                os.replace(str(path) + ".tmp", path)
                self._header_k = max(len(r["classes"]) for r in self._rows)
            self._csv = open(path, "a" if self._rows else "w", newline="")

    def _append(self, rows: list[dict[str, Any]]) -> None:
        if self._progress is None:
            return
        for r in rows:
            self._progress.write(json.dumps(r) + "\n")
        self._progress.flush()
        if self._csv is not None:
            if self._header_k is None:
                self._header_k = max(len(r["classes"]) for r in rows)
                csv.writer(self._csv).writerow(csv_header(self._header_k))
            csv.writer(self._csv).writerows(csv_line(r) for r in rows)
            self._csv.flush()
        self._rows.extend(rows)

    def _close(self) -> None:
        for f in (self._progress, self._csv):
            if f is not None:
                f.close()
        self._progress = self._csv = None

    def _finish(self) -> None:
        self._close()
        path = str(self._path)
        rows = _dedupe(self._rows)
        tmp = path + ".tmp"
        if self._fmt == "json":
            write_json(tmp, rows)
        else:
            write_csv(tmp, rows)
        os.replace(tmp, path)
        with open(path + DONE + ".tmp", "w") as f:
            json.dump({"fingerprint": self._fingerprint, "videos": len(rows)}, f)
        os.replace(path + DONE + ".tmp", path + DONE)
        Path(path + PROGRESS).unlink(missing_ok=True)
        self.written_path = path
        print(f"predict: predictions of {len(rows)} videos written to {path}")


PROGRESS = ".progress.jsonl"
DONE = ".done.json"


def read_done(path: str | os.PathLike, fingerprint: str) -> list[dict[str, Any]] | None:
    """``[]``-like marker of a finished run of the same prediction (``None`` when there is none)."""
    try:
        done = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(done, dict) or done.get("fingerprint") != fingerprint:
        return None
    return [{}] * int(done.get("videos", 0))


def _reload_predict_loader(trainer: L.Trainer) -> None:
    """Build the predict loaders again after the videos to do changed (Lightning built them before
    ``on_predict_start``, the first hook that sees the restored checkpoint); the loop reads its fetcher
    after that hook."""
    loop = trainer.predict_loop
    if loop._data_fetcher is not None:
        loop._data_fetcher.teardown()
    loop.setup_data()
    loop.reset()


def read_progress(path: str | os.PathLike, fingerprint: str) -> list[dict[str, Any]]:
    """Rows of an unfinished run's progress file when it belongs to the same prediction, else ``[]``; a
    line cut by a kill is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    try:
        if not lines or json.loads(lines[0]).get("fingerprint") != fingerprint:
            return []
    except json.JSONDecodeError:
        return []
    rows = []
    for line in lines[1:]:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def _predict_datasets(trainer: L.Trainer) -> list[Any] | None:
    """The data module's own list of predict datasets (``VideoDataModule.datasets("predict")``), in which the
    writer replaces the first by the videos still to do, before the loaders are made."""
    getter = getattr(trainer.datamodule, "datasets", None)
    return getter("predict") if callable(getter) else None


#: Data module attributes that change how videos are loaded, not what is predicted.
_LOADER_OPTIONS = (
    "num_workers", "pin_memory", "persistent_workers", "batch_size", "eval_batch_size", "prefetch_factor"
)


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def _weights_digest(pl_module: L.LightningModule) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(pl_module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def _fingerprint(trainer: L.Trainer, pl_module: L.LightningModule, datasets: list[Any] | None) -> str:
    """What makes two predict runs the same prediction (see :class:`PredictionWriter`)."""
    ckpt = trainer.ckpt_path
    names = getattr(pl_module, "predict_class_names", None)
    dm = trainer.datamodule
    data = {k: v for k, v in sorted(vars(dm).items()) if not k.startswith("_") and k not in _LOADER_OPTIONS
            and _plain(v)} if dm is not None else {}
    samples = getattr(datasets[0], "samples", None) if datasets else None
    key = {
        "ckpt": os.path.abspath(ckpt) if ckpt and os.path.isfile(ckpt) else ckpt,
        "weights": _weights_digest(pl_module),
        "vocabulary": list(names()) if callable(names) else None,
        "hparams": repr(sorted(dict(pl_module.hparams).items())),
        "data": [type(dm).__name__, data],
        "videos": [[s.path, getattr(s, "label", None)] for s in samples] if samples is not None else None,
    }
    return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()


def _dedupe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not rows or any(r.get("index") is None for r in rows):
        return rows
    seen: dict[int, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(int(r["index"]), r)
    return [seen[i] for i in sorted(seen)]


def csv_header(k: int) -> list[str]:
    header = ["path", "index", "label", "label_name", "skipped"]
    for i in range(1, k + 1):
        header += [f"pred_{i}", f"score_{i}"]
    return header


def csv_line(r: dict[str, Any]) -> list[Any]:
    line = [r.get("path"), r.get("index"), r.get("label"), r.get("label_name"), int(bool(r.get("skipped")))]
    for name, score in zip(r["classes"], r["scores"], strict=True):
        line += [name, f"{score:.6f}"]
    return line


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """One line per video (see :class:`PredictionWriter`)."""
    k = max((len(r["classes"]) for r in rows), default=0)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(csv_header(k))
        writer.writerows(csv_line(r) for r in rows)


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
