"""``tc-clip prepare``: a dataset's videos re-encoded once into a tree made for training.

Real datasets ship 360p-1080p originals with long GOPs and B-frames; a training clip then pays for
decoding many more pixels and frames than it keeps. Like mmaction2's ``tools/data/resize_videos.py``
(``scale=-2:256``, libx264, ``-g 16``), :func:`prepare_files` writes every video into ``output_dir``
under its relative path:

- short side ``short_side`` (256), never upscaled; both sides even (4:2:0 H.264 needs it);
- H.264 (libx264, ``crf`` 18, which x264 calls visually lossless; ``preset``; ``tune`` fastdecode), a
  keyframe at least every ``gop`` frames, ``bframes`` B-frames (0), yuv420p; every frame kept, with its
  timestamp;
- audio, subtitles and metadata dropped; a display rotation applied to the pixels;
- the container of the extension (``.mp4``, ``.mkv``, ``.avi``, ...). Extensions whose container
  cannot hold H.264 (``.webm``, ``.mpg``, ``.wmv``) get Matroska under the same name, so annotation
  files that name the videos still apply (decoders look at the content, not at the name).

This is a data-preparation step, not the paper's input: a reproduction run should say it used it.

Safety: outputs are written to a temporary name in their final folder, synced and renamed, so a kill
loses at most the files in flight and never leaves a half-written file under a final name. Every
finished file is appended to a journal at once (``.prepare_journal.jsonl``) and folded into
``prepare_manifest.json`` at the end (source, size, mtime and SHA-256; output; geometry; settings;
tool versions). A rerun skips the files whose manifest entry matches (same source size and mtime,
same settings, output present with its recorded size). An unreadable source is recorded as failed
and reported, never fatal. The output may not lie inside the source tree nor contain it, and one
output folder takes one ``prepare`` at a time (a lock file).

Encoders: ``pyav`` (FFmpeg's libraries through PyAV, a dependency) or ``ffmpeg`` (the binary, where
installed). Measured on 10-second 1280x720 and 640x360 H.264 files to 456x256 they take the same time
within noise; ``pyav`` is the default because it is always there. Each is its own PSNR reference: the
source resized by the same scaler, so the PSNR measures the encoding, not the two scalers' difference.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tc_clip._hashing import file_sha256
from tc_clip.data.reencode import (
    ENCODERS,
    PrepareSettings,
    container_format,
    encode,
    measure_psnr,
    tool_versions,
)
from tc_clip.errors import UserError

__all__ = ["ENCODERS", "MANIFEST", "ListFile", "PrepareError", "PrepareReport", "PrepareSettings",
           "check_folders", "container_format", "datamodule_sources", "folder_sources", "prepare_datamodule",
           "prepare_files", "prepare_folder", "write_lists"]

MANIFEST = "prepare_manifest.json"
JOURNAL = ".prepare_journal.jsonl"
LOCK = ".prepare.lock"
TMP_SUFFIX = ".tc-clip-tmp"


class PrepareError(UserError, ValueError):
    """A refused ``prepare`` (bad folders, a busy output, bad settings): the message says which."""


@dataclass
class ListFile:
    """A list file to write next to the prepared videos: ``relative/path label`` lines (or bare paths
    when ``labels`` is None), and its class names as ``<stem>_labels.csv`` when given."""

    name: str
    paths: list[str]  # relative to the output folder
    labels: list[int] | None = None
    class_names: list[str] | None = None


@dataclass
class PrepareReport:
    """What :func:`prepare_files` did; ``str()`` is the summary the command prints."""

    output_dir: str
    settings: PrepareSettings
    videos: int = 0
    encoded: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, error)
    psnr: list[float] = field(default_factory=list)
    source_bytes: int = 0
    output_bytes: int = 0
    seconds: float = 0.0
    lists: list[str] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)
    source_root: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed

    def format(self, limit: int = 20) -> str:
        s = self.settings
        lines = [
            f"prepared {self.videos} videos into {self.output_dir} in {self.seconds:.0f} s: {self.encoded} encoded, "
            f"{self.skipped} already done, {len(self.failed)} failed",
            f"encoder: {s.encoder} ({self.tools.get(s.encoder, '?')}), libx264 CRF {s.crf:g} preset {s.preset} "
            f"tune {s.tune}; "
            f"short side {s.short_side} (never upscaled), a keyframe every {s.gop} frames, "
            f"{s.bframes or 'no'} B-frames, audio dropped, rotation applied",
            f"size: {self.source_bytes / 2**20:.1f} MiB of sources -> {self.output_bytes / 2**20:.1f} MiB",
        ]
        if self.psnr:
            lines.append(f"PSNR against the source resized alike: mean {sum(self.psnr) / len(self.psnr):.1f} dB, "
                         f"min {min(self.psnr):.1f} dB, over {len(self.psnr)} sampled videos")
        if self.source_root:
            lines.append(f"the videos keep their paths relative to {self.source_root}: point the data module's "
                         f"video folder (--data.root or --data.videos_dir) at {self.output_dir}, or use the lists")
        if self.lists:
            lines.append("list files (paths relative to the output folder): " + ", ".join(self.lists))
        if self.failed:
            lines.append(f"unreadable sources, not prepared ({len(self.failed)}; their list lines are kept and "
                         "name the missing outputs):")
            lines += [f"  {src}: {err}" for src, err in self.failed[:limit]]
            if len(self.failed) > limit:
                lines.append(f"  ... and {len(self.failed) - limit} more (see {MANIFEST})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


@dataclass
class _Job:
    source: str
    rel: str
    output: str
    psnr: bool = False


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_folders(sources: Iterable[str], source_root: str | os.PathLike, output_dir: str | os.PathLike) -> None:
    """Refuse an output folder inside the source tree, or one that holds a source video."""
    root, out = Path(source_root).resolve(), Path(output_dir).resolve()
    if _inside(out, root):
        raise PrepareError(f"output_dir {output_dir} is inside the source tree {source_root}: choose a folder "
                           "outside it (prepare never writes into the sources)")
    inside = next((s for s in sources if _inside(Path(s).resolve(), out)), None)
    if inside is not None:
        raise PrepareError(f"output_dir {output_dir} holds the source video {inside}: choose an empty folder "
                           "outside the sources")


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _process(job: _Job, settings: PrepareSettings, threads: int) -> dict[str, Any]:
    """Encode one video (in a worker). Never raises: a failure is an entry with ``status: failed``."""
    start = time.perf_counter()
    entry: dict[str, Any] = {"path": job.rel, "source": job.source, "output": job.output}
    final = Path(job.output)
    tmp = final.with_name(f".{final.name}{TMP_SUFFIX}")
    try:
        st = os.stat(job.source)
        entry.update(source_bytes=st.st_size, source_mtime_ns=st.st_mtime_ns, source_sha256=file_sha256(job.source))
        final.parent.mkdir(parents=True, exist_ok=True)
        info = encode(job.source, str(tmp), container_format(final), settings, threads)
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(final.parent, directory=True)
        entry.update(info, output_bytes=final.stat().st_size, status="ok")
        if job.psnr:
            entry["psnr"] = round(measure_psnr(job.source, str(final), info, settings.encoder), 3)
    except Exception as e:  # noqa: BLE001 - one unreadable source is reported, never fatal
        entry.update(status="failed", error=f"{type(e).__name__}: {e}".strip()[:500])
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    entry.update(settings=settings.key(), seconds=round(time.perf_counter() - start, 3))
    return entry


def _worker_init() -> None:
    """Workers die with the main process (a killed ``prepare`` leaves no orphan encoding) and leave
    Ctrl-C to it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Manifest:
    """``prepare_manifest.json`` plus the journal of files finished since it was last written."""

    def __init__(self, out: Path):
        self.path, self.journal = out / MANIFEST, out / JOURNAL
        self.header: dict[str, Any] = {}
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.header = {k: v for k, v in data.items() if k != "files"}
                self.entries = {e["path"]: e for e in data.get("files", [])}
            except (ValueError, KeyError, TypeError) as e:
                raise PrepareError(f"{self.path}: not a prepare manifest ({e}); move it away to start over") from e
        if self.journal.exists():
            for line in self.journal.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):  # a line torn by a kill
                    entry = json.loads(line)
                    self.entries[entry["path"]] = entry
        self._log = open(self.journal, "a", encoding="utf-8")  # noqa: SIM115 - closed in write()

    def done(self, job: _Job, settings: PrepareSettings) -> bool:
        e = self.entries.get(job.rel)
        if not e or e.get("status") != "ok" or e.get("source") != job.source or e.get("settings") != settings.key():
            return False
        try:
            st, out = os.stat(job.source), os.stat(job.output)
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns, out.st_size) == (
            e.get("source_bytes"), e.get("source_mtime_ns"), e.get("output_bytes"))

    def add(self, entry: dict[str, Any]) -> None:
        self.entries[entry["path"]] = entry
        self._log.write(json.dumps(entry) + "\n")
        self._log.flush()
        os.fsync(self._log.fileno())

    def write(self, header: dict[str, Any]) -> None:
        self.header = header
        data = {**header, "files": [self.entries[k] for k in sorted(self.entries)]}
        tmp = self.path.with_name(self.path.name + TMP_SUFFIX)
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        _fsync(tmp)
        os.replace(tmp, self.path)
        self._log.close()
        self.journal.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(out: Path):
    import fcntl

    with open(out / LOCK, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PrepareError(f"another tc-clip prepare is writing into {out}") from None
        yield


def _sweep_temporaries(out: Path) -> None:
    """Remove the temporary files of a killed run (only our own names)."""
    for dirpath, _, files in os.walk(out):
        for name in files:
            if name.endswith(TMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(dirpath, name))


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "list"


def write_lists(out: Path, lists: Sequence[ListFile]) -> list[str]:
    """Write the list files (and label CSVs) into ``out``; returns their file names."""
    written: list[str] = []
    for lf in lists:
        stem, k = _safe_name(lf.name), 2
        while f"{stem}.txt" in written:  # two sets of one name
            stem, k = f"{_safe_name(lf.name)}-{k}", k + 1
        rows = lf.paths if lf.labels is None else [f"{p} {y}" for p, y in zip(lf.paths, lf.labels, strict=True)]
        (out / f"{stem}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
        written.append(f"{stem}.txt")
        if lf.class_names is not None:
            (out / f"{stem}_labels.csv").write_text(
                "id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(lf.class_names)), encoding="utf-8")
            written.append(f"{stem}_labels.csv")
    return written


def _spread(n: int, count: int) -> list[int]:
    """``min(count, n)`` distinct positions spread evenly over ``range(n)``."""
    k = min(count, n)
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)}) if k > 0 else []


def prepare_files(
    sources: Sequence[tuple[str, str]],
    output_dir: str | os.PathLike,
    source_root: str | os.PathLike,
    settings: PrepareSettings | None = None,
    workers: int | None = None,
    lists: Sequence[ListFile] = (),
    psnr_videos: int = 8,
    progress: bool = True,
) -> PrepareReport:
    """Re-encode ``sources`` (``(path, relative path)`` pairs; the relative path is kept under
    ``output_dir``) with ``settings`` in ``workers`` processes (default: one per CPU), skipping the files
    a previous run finished, then write ``lists`` and ``prepare_manifest.json``. ``psnr_videos`` videos,
    spread over the work, also get their PSNR against the source (decoded and resized alike)."""
    settings = settings or PrepareSettings()
    settings.validate()
    if settings.encoder == "ffmpeg" and shutil.which("ffmpeg") is None:
        raise PrepareError("encoder 'ffmpeg' needs the ffmpeg binary on PATH (or use --encoder pyav)")
    out = Path(output_dir)
    check_folders([s for s, _ in sources], source_root, out)
    out.mkdir(parents=True, exist_ok=True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = max(1, min(workers or cpus, max(len(sources), 1)))
    threads = max(1, cpus // workers)
    start = time.perf_counter()
    report = PrepareReport(str(out), settings, videos=len(sources), tools=tool_versions(settings.encoder),
                           source_root=str(source_root))
    with _locked(out):
        _sweep_temporaries(out)
        manifest = _Manifest(out)
        jobs = [_Job(src, rel, str(out / rel)) for src, rel in sources]
        todo = [j for j in jobs if not manifest.done(j, settings)]
        for k in _spread(len(todo), psnr_videos):
            todo[k].psnr = True
        report.skipped = len(jobs) - len(todo)
        header = {
            "version": 1, "source_root": str(Path(source_root).resolve()), "output_dir": str(out.resolve()),
            "settings": asdict(settings), "tools": report.tools,
        }
        try:
            for entry in _run(todo, settings, workers, threads, progress):
                manifest.add(entry)
                report.encoded += entry["status"] == "ok"
        finally:
            report.seconds = time.perf_counter() - start
            current = {j.rel for j in jobs}
            entries = [e for rel, e in manifest.entries.items() if rel in current]
            report.failed = [(e["source"], e.get("error", "")) for e in entries if e.get("status") != "ok"]
            report.psnr = [e["psnr"] for e in entries if e.get("status") == "ok" and "psnr" in e]
            report.source_bytes = sum(e.get("source_bytes", 0) for e in entries)
            report.output_bytes = sum(e.get("output_bytes", 0) for e in entries if e.get("status") == "ok")
            report.lists = write_lists(out, lists)
            manifest.write({**header, "lists": report.lists, "summary": {
                "videos": report.videos, "encoded": report.encoded, "skipped": report.skipped,
                "failed": len(report.failed), "psnr_mean": sum(report.psnr) / len(report.psnr) if report.psnr else None,
                "psnr_videos": len(report.psnr), "seconds": round(report.seconds, 1),
            }})
    return report


def _run(todo: list[_Job], settings: PrepareSettings, workers: int, threads: int, progress: bool):
    """The entries of ``todo`` as they finish, at most ``2 * workers`` in flight, with a progress bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), unit="video", desc="prepare", disable=None if progress else True, file=sys.stderr)
    try:
        if workers == 1:
            for job in todo:
                yield _process(job, settings, threads)
                bar.update()
            return
        import multiprocessing as mp

        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init)
        try:
            queue = iter(todo)
            pending: set[Future] = set()
            while True:
                for job in queue:
                    pending.add(pool.submit(_process, job, settings, threads))
                    if len(pending) >= 2 * workers:
                        break
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
                    bar.update()
        except BaseException:  # Ctrl-C or a failing caller: the files in flight are lost, nothing waits for them
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in processes:
                with contextlib.suppress(OSError, AttributeError, ValueError):
                    proc.kill()
            raise
        pool.shutdown()
    finally:
        bar.close()


def folder_sources(input_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """Every video below ``input_dir`` (hidden files and folders left out) with its relative path."""
    from tc_clip.data.annotations import VIDEO_EXTENSIONS

    root = Path(input_dir)
    if not root.is_dir():
        raise PrepareError(f"--input_dir {input_dir}: not a folder")
    found = []
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."):
                path = os.path.join(dirpath, name)
                found.append((path, os.path.relpath(path, root)))
    if not found:
        raise PrepareError(f"--input_dir {input_dir}: no video ({' '.join(VIDEO_EXTENSIONS)}) below it")
    return found


def prepare_folder(input_dir: str | os.PathLike, output_dir: str | os.PathLike, **kwargs: Any) -> PrepareReport:
    """:func:`prepare_files` on every video below ``input_dir``; writes ``videos.txt`` (relative paths)."""
    sources = folder_sources(input_dir)
    lists = [ListFile("videos", [rel for _, rel in sources])]
    return prepare_files(sources, output_dir, input_dir, lists=lists, **kwargs)


def _parts(datamodule: Any, stage: str) -> list[Any]:
    """The list-reading modules behind ``datamodule`` for ``stage`` (a suite's members: evaluation only)."""
    members = getattr(datamodule, "members", None)
    if members is None:
        return [datamodule]
    return [] if stage == "fit" else list(members.values())


def _common_root(parts: Sequence[Any], paths: Sequence[str]) -> str:
    """The data module's video folder (``videos_dir``, else ``root``) where it holds every video, so the
    prepared tree can replace it; else the videos' common folder."""
    for part in parts:
        folder = getattr(part, "videos_dir", None) or getattr(part, "root", None)
        if folder and all(_inside(Path(p), Path(os.path.abspath(folder))) for p in paths):
            return os.path.abspath(folder)
    return os.path.commonpath([os.path.dirname(p) for p in paths])


def datamodule_sources(
    datamodule: Any, stages: Sequence[str] = ("fit", "validate", "test")
) -> tuple[list[tuple[str, str]], str, list[ListFile]]:
    """The videos of ``stages`` of a data module: ``(path, relative path)`` pairs, the folder they are
    relative to, and one list file per split (``<stage>_<set name>``, with its labels CSV)."""
    if hasattr(datamodule, "prepare_data"):
        datamodule.prepare_data()
    splits, parts = [], []
    for stage in stages:
        for part in _parts(datamodule, stage):
            parts.append(part)
            splits += [(stage, split) for split in part.splits(stage)]
    paths = list(dict.fromkeys(os.path.abspath(s.path) for _, split in splits for s in split.samples))
    if not paths:
        raise PrepareError(f"the data module has no video in the stages {', '.join(stages)}")
    root = _common_root(parts, paths)
    rel = {p: os.path.relpath(p, root) for p in paths}
    lists = []
    for stage, split in splits:
        labelled = stage != "predict"
        lists.append(ListFile(
            f"{stage}_{split.name}", [rel[os.path.abspath(s.path)] for s in split.samples],
            [int(s.label) for s in split.samples] if labelled else None,
            list(split.class_names) if labelled else None,
        ))
    return [(p, rel[p]) for p in paths], root, lists


def prepare_datamodule(
    datamodule: Any, output_dir: str | os.PathLike, stages: Sequence[str] = ("fit", "validate", "test"),
    **kwargs: Any,
) -> PrepareReport:
    """:func:`prepare_files` on every video of ``stages`` of a data module (the one ``tc-clip fit`` would
    build), keeping their paths relative to its video folder; writes one list file per split."""
    sources, root, lists = datamodule_sources(datamodule, stages)
    return prepare_files(sources, output_dir, root, lists=lists, **kwargs)
