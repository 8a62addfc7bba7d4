"""Readers for list files, label files and the benchmarks' own annotation formats, and the protocol
helpers (few-shot sampling, class subsets).

Every reader returns :class:`Sample` rows that remember where they came from (``file:line``), and
reports problems as ``ValueError("<file>:<line>: ...")``. Passing a list as ``errors`` collects the
messages instead of raising (used by ``check_data`` to report everything at once).
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "VIDEO_EXTENSIONS",
    "Sample",
    "report",
    "read_labels_csv",
    "read_llm_names",
    "read_class_list",
    "read_list_file",
    "write_list_file",
    "scan_class_folders",
    "list_videos",
    "read_ucf101",
    "read_hmdb51",
    "read_ssv2",
    "read_kinetics_csv",
    "sample_few_shot",
    "shots_per_class",
    "subset_classes",
]

#: How list, label and name files are read: UTF-8, a leading byte-order mark (Windows editors write one)
#: dropped, so that it does not become part of the first path, header or name.
TEXT_ENCODING = "utf-8-sig"

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


@dataclass
class Sample:
    path: str  # absolute (or as given) path of the video
    label: int  # -1 when unknown (predict)
    where: str = ""  # "file:line" the sample came from, for messages


def report(errors: list[str] | None, msg: str) -> None:
    """A problem of the data: raised as ``ValueError(msg)``, or collected in ``errors`` when given."""
    if errors is None:
        raise ValueError(msg)
    errors.append(msg)


def _join(root: str | os.PathLike | None, rel: str) -> str:
    return rel if root is None or os.path.isabs(rel) else os.path.join(str(root), rel)


def read_labels_csv(path: str | os.PathLike, errors: list[str] | None = None) -> list[str]:
    """``id,name`` CSV (header required) -> names indexed by id; ids must be 0..n-1, each once."""
    names: dict[int, str] = {}
    with open(path, newline="", encoding=TEXT_ENCODING) as fh:
        rows = list(csv.reader(fh))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["id", "name"]:
        report(errors, f"{path}:1: a label file needs the header 'id,name'")
        return []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            report(errors, f"{path}:{lineno}: expected 'id,name', got {','.join(row)!r}")
            continue
        try:
            i = int(row[0])
        except ValueError:
            report(errors, f"{path}:{lineno}: class id {row[0]!r} is not an integer")
            continue
        if i in names:
            report(errors, f"{path}:{lineno}: class id {i} appears twice")
            continue
        names[i] = ",".join(row[1:]).strip()
    if names and sorted(names) != list(range(len(names))):
        missing = sorted(set(range(max(names) + 1)) - set(names))
        report(errors, f"{path}: class ids must be 0..{len(names) - 1}; missing {missing[:10]}")
    return [names[i] for i in sorted(names)]


def read_llm_names(path: str | os.PathLike, num_classes: int, errors: list[str] | None = None) -> list[str]:
    """JSON ``{"0": "text", ...}`` (LLM-rephrased class names) -> list indexed by class id."""
    with open(path, encoding=TEXT_ENCODING) as fh:
        data = json.load(fh)
    if isinstance(data, list):
        data = {str(i): t for i, t in enumerate(data)}
    out: list[str] = [""] * num_classes
    for k, v in data.items():
        try:
            i = int(k)
        except ValueError:
            report(errors, f"{path}: key {k!r} is not a class id")
            continue
        if not 0 <= i < num_classes:
            report(errors, f"{path}: class id {i} out of range 0..{num_classes - 1}")
            continue
        out[i] = v if isinstance(v, str) else " ".join(map(str, v))
    missing = [i for i, t in enumerate(out) if not t]
    if missing:
        report(errors, f"{path}: no name for class ids {missing[:10]}")
    return out


def read_class_list(spec: str | Sequence[str] | None) -> list[str] | None:
    """Class names given inline (a list) or as a file: one name a line, or a labels CSV ``id,name``."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        return [str(s) for s in spec]
    if spec.lower().endswith(".csv"):
        return read_labels_csv(spec)
    if spec.lower().endswith(".json"):
        with open(spec, encoding=TEXT_ENCODING) as fh:
            data = json.load(fh)
        return list(data.values()) if isinstance(data, dict) else [str(s) for s in data]
    with open(spec, encoding=TEXT_ENCODING) as fh:
        return [line.strip() for line in fh if line.strip()]


def read_list_file(
    path: str | os.PathLike,
    root: str | os.PathLike | None = None,
    num_classes: int | None = None,
    errors: list[str] | None = None,
) -> list[Sample]:
    """Lines ``relative/path.ext label`` (space separated; the path may contain spaces, the label is the
    last field). Paths are joined to ``root`` (default: the list file's folder). Blank lines are skipped;
    no line is a comment: HMDB-51 file names begin with ``#``."""
    root = Path(path).parent if root is None else root
    samples = []
    with open(path, encoding=TEXT_ENCODING) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                report(errors, f"{path}:{lineno}: expected 'relative/path label', got {line!r}")
                continue
            rel, lab = parts
            try:
                label = int(lab)
            except ValueError:
                report(errors, f"{path}:{lineno}: label {lab!r} is not an integer (line {line!r})")
                continue
            if label < 0 or (num_classes is not None and label >= num_classes):
                hi = "" if num_classes is None else f"..{num_classes - 1}"
                report(errors, f"{path}:{lineno}: label {label} out of range 0{hi}")
                continue
            samples.append(Sample(_join(root, rel), label, f"{path}:{lineno}"))
    return samples


def write_list_file(
    samples: Iterable[Sample], path: str | os.PathLike, root: str | os.PathLike | None
) -> None:
    """Write ``relative/path label`` lines (paths relative to ``root`` where possible)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for s in samples:
        p = s.path
        if root is not None:
            try:
                p = os.path.relpath(p, root)
            except ValueError:
                pass
        lines.append(f"{p} {s.label}")
    tmp = f"{path}.tmp{os.getpid()}"
    Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS)


def list_videos(spec: str | Sequence[str]) -> list[Sample]:
    """Unlabelled videos (label -1) for predict: a folder (searched recursively), a list file (labels
    optional; no line is a comment) or video paths."""
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[Sample] = []
    for item in items:
        if os.path.isdir(item):
            for dirpath, dirnames, files in os.walk(item):
                dirnames.sort()
                out += [Sample(os.path.join(dirpath, f), -1, item) for f in sorted(files) if _is_video(f)]
        elif _is_video(item):
            out.append(Sample(item, -1, item))
        else:
            with open(item, encoding=TEXT_ENCODING) as fh:
                for lineno, line in enumerate(fh, start=1):
                    line = line.strip()
                    if not line:
                        continue
                    parts = line.rsplit(maxsplit=1)
                    if len(parts) == 2 and re.fullmatch(r"-?\d+", parts[1]):
                        rel, label = parts[0], int(parts[1])
                    else:
                        rel, label = line, -1
                    out.append(Sample(_join(Path(item).parent, rel), label, f"{item}:{lineno}"))
    return out


def scan_class_folders(
    folder: str | os.PathLike, class_names: Sequence[str] | None = None, errors: list[str] | None = None
) -> tuple[list[Sample], list[str]]:
    """A folder with one sub-folder per class (videos anywhere below it). Without ``class_names`` the
    classes are the sorted sub-folder names."""
    folder = Path(folder)
    subdirs = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    names = list(class_names) if class_names is not None else subdirs
    lookup = {n: i for i, n in enumerate(names)}
    samples = []
    for d in subdirs:
        if d not in lookup:
            report(errors, f"{folder / d}: class folder {d!r} is not in the label file")
            continue
        for dirpath, dirnames, files in os.walk(folder / d):
            dirnames.sort()
            for f in sorted(files):
                if _is_video(f):
                    samples.append(Sample(os.path.join(dirpath, f), lookup[d], str(folder / d)))
    return samples, names


# --- UCF-101 ---------------------------------------------------------------------------------------


def read_ucf101(
    annotations: str | os.PathLike,
    videos: str | os.PathLike,
    split: int = 1,
    train: bool = True,
    errors: list[str] | None = None,
) -> tuple[list[Sample], list[str]]:
    """``classInd.txt`` (``1 ApplyEyeMakeup``) with ``trainlist0N.txt`` (``Class/v_x.avi 1``) or
    ``testlist0N.txt`` (``Class/v_x.avi``, the class from the folder). Labels become 0-based."""
    ann = Path(annotations)
    names: dict[int, str] = {}
    class_ind = ann / "classInd.txt"
    with open(class_ind, encoding=TEXT_ENCODING) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit():
                report(errors, f"{class_ind}:{lineno}: expected 'index ClassName', got {line.strip()!r}")
                continue
            names[int(parts[0]) - 1] = parts[1]
    if sorted(names) != list(range(len(names))):
        report(errors, f"{class_ind}: class indices must be 1..{len(names)}")
    class_names = [names[i] for i in sorted(names)]
    lookup = {n: i for i, n in enumerate(class_names)}
    list_file = ann / f"{'trainlist' if train else 'testlist'}{split:02d}.txt"
    samples = []
    with open(list_file, encoding=TEXT_ENCODING) as fh:
        for lineno, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            rel = parts[0]
            where = f"{list_file}:{lineno}"
            folder = rel.replace("\\", "/").split("/")[0]
            if folder not in lookup:
                report(errors, f"{where}: class {folder!r} is not in {class_ind}")
                continue
            label = lookup[folder]
            if len(parts) > 1:
                try:
                    given = int(parts[1]) - 1
                except ValueError:
                    report(errors, f"{where}: label {parts[1]!r} is not an integer")
                    continue
                if not 0 <= given < len(class_names):
                    report(errors, f"{where}: label {parts[1]} out of range 1..{len(class_names)}")
                    continue
                label = given
            samples.append(Sample(os.path.join(str(videos), rel), label, where))
    return samples, class_names


# --- HMDB-51 ---------------------------------------------------------------------------------------


def read_hmdb51(
    annotations: str | os.PathLike,
    videos: str | os.PathLike,
    split: int = 1,
    train: bool = True,
    errors: list[str] | None = None,
) -> tuple[list[Sample], list[str]]:
    """``<class>_test_split<N>.txt`` files with lines ``video.avi 1|2|0`` (1 train, 2 test, 0 unused);
    videos under ``videos/<class>/``. Classes are the sorted class names found in the split files."""
    ann = Path(annotations)
    pattern = re.compile(rf"^(.*)_test_split{split}\.txt$")
    files = sorted(f for f in os.listdir(ann) if pattern.match(f))
    if not files:
        raise FileNotFoundError(f"no '<class>_test_split{split}.txt' files in {ann}")
    class_names = [pattern.match(f).group(1) for f in files]  # type: ignore[union-attr]
    want = "1" if train else "2"
    samples = []
    for label, (cls, f) in enumerate(zip(class_names, files, strict=False)):
        with open(ann / f, encoding=TEXT_ENCODING) as fh:
            for lineno, line in enumerate(fh, start=1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    report(errors, f"{ann / f}:{lineno}: expected 'video.avi 0|1|2', got {line.strip()!r}")
                    continue
                if parts[1] == want:
                    samples.append(
                        Sample(os.path.join(str(videos), cls, parts[0]), label, f"{ann / f}:{lineno}")
                    )
    return samples, class_names


# --- Something-Something v2 --------------------------------------------------------------------------


def ssv2_class_name(template: str) -> str:
    """``"Putting [something] on a surface"`` -> ``"Putting something on a surface"``."""
    return template.replace("[", "").replace("]", "")


def read_ssv2(
    labels_json: str | os.PathLike,
    split_json: str | os.PathLike,
    videos: str | os.PathLike,
    errors: list[str] | None = None,
    extension: str = ".webm",
) -> tuple[list[Sample], list[str]]:
    """SSv2 ``labels.json`` (``{"template": "id"}``) and ``train.json`` / ``validation.json`` (a list of
    ``{"id", "template", ...}``); videos ``<id>.webm``. ``test.json`` entries without a template get
    label -1."""
    with open(labels_json, encoding=TEXT_ENCODING) as fh:
        mapping = json.load(fh)
    ids = {name: int(i) for name, i in mapping.items()}
    if sorted(ids.values()) != list(range(len(ids))):
        report(errors, f"{labels_json}: class ids must be 0..{len(ids) - 1}")
    lower = {name.lower(): i for name, i in ids.items()}
    class_names = [""] * len(ids)
    for name, i in ids.items():
        if 0 <= i < len(ids):
            class_names[i] = name
    with open(split_json, encoding=TEXT_ENCODING) as fh:
        entries = json.load(fh)
    samples = []
    for k, entry in enumerate(entries):
        where = f"{split_json}: entry {k}"
        if not isinstance(entry, dict) or "id" not in entry:
            report(errors, f"{where}: expected an object with an 'id'")
            continue
        template = entry.get("template")
        if template is None:
            label = -1
        else:
            name = ssv2_class_name(template)
            label = ids.get(name, lower.get(name.lower(), -1))
            if label < 0:
                report(errors, f"{where}: class {name!r} is not in {labels_json}")
                continue
        samples.append(Sample(os.path.join(str(videos), f"{entry['id']}{extension}"), label, where))
    return samples, class_names


# --- Kinetics --------------------------------------------------------------------------------------


def index_videos(folder: str | os.PathLike) -> dict[str, str]:
    """File stem -> path for every video below ``folder`` (first one wins)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, files in os.walk(folder):
        dirnames.sort()
        for f in sorted(files):
            if _is_video(f):
                out.setdefault(os.path.splitext(f)[0], os.path.join(dirpath, f))
    return out


def read_kinetics_csv(
    csv_path: str | os.PathLike,
    videos: str | os.PathLike | dict[str, str],
    class_names: Sequence[str] | None = None,
    errors: list[str] | None = None,
) -> tuple[list[Sample], list[str], list[str]]:
    """Kinetics CSV ``label,youtube_id,time_start,time_end,split[,is_cc]``. Videos are looked up by file
    stem ``<youtube_id>_<start:06d>_<end:06d>`` or ``<youtube_id>`` anywhere below ``videos`` (or in a
    ready stem->path dict). Returns ``(samples, class_names, missing)``: rows whose video is not found
    are left out and listed in ``missing`` (Kinetics copies always lack some videos). Without
    ``class_names`` the classes are the sorted labels of the CSV."""
    with open(csv_path, newline="", encoding=TEXT_ENCODING) as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or [])
        need = {"youtube_id", "time_start", "time_end"}
        if not need <= fields:
            raise ValueError(f"{csv_path}:1: a Kinetics CSV needs the columns {sorted(need | {'label'})}")
        rows = list(reader)
    has_label = "label" in fields
    if class_names is None:
        if not has_label:
            raise ValueError(f"{csv_path}: no 'label' column and no label file given")
        class_names = sorted({r["label"].strip() for r in rows})
    lookup = {n: i for i, n in enumerate(class_names)}
    index = videos if isinstance(videos, dict) else index_videos(videos)
    samples, missing = [], []
    for lineno, r in enumerate(rows, start=2):
        where = f"{csv_path}:{lineno}"
        label = -1
        if has_label and r.get("label"):
            name = r["label"].strip()
            if name not in lookup:
                report(errors, f"{where}: class {name!r} is not in the label file")
                continue
            label = lookup[name]
        try:
            stem = f"{r['youtube_id']}_{int(float(r['time_start'])):06d}_{int(float(r['time_end'])):06d}"
        except (TypeError, ValueError):
            report(errors, f"{where}: malformed row {r}")
            continue
        path = index.get(stem) or index.get(r["youtube_id"])
        if path is None:
            missing.append(f"{where}: {stem}")
            continue
        samples.append(Sample(path, label, where))
    return samples, list(class_names), missing


# --- protocols -------------------------------------------------------------------------------------


def shots_per_class(samples: Sequence[Sample]) -> dict[int, int]:
    """Number of videos of every label present in ``samples``."""
    counts: dict[int, int] = defaultdict(int)
    for s in samples:
        counts[s.label] += 1
    return dict(sorted(counts.items()))


def sample_few_shot(
    samples: Sequence[Sample],
    shot: int,
    seed: int,
    class_names: Sequence[str] | None = None,
    source: str = "the training list",
) -> list[Sample]:
    """``shot`` videos per class drawn with ``random.Random(seed)``, in the order of the input list. A
    class with fewer than ``shot`` videos is an error (a K-shot experiment never silently has fewer)."""
    if shot < 1:
        raise ValueError(f"shot must be >= 1, got {shot}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_class[s.label].append(i)
    short = [(c, len(idx)) for c, idx in sorted(by_class.items()) if len(idx) < shot]
    if short:
        named = ", ".join(f"{(class_names[c] if class_names else c)!r}: {n}" for c, n in short[:10])
        raise ValueError(
            f"{source}: shot={shot} asks for more videos than {len(short)} classes hold ({named})"
        )
    rng = random.Random(seed)
    keep: set[int] = set()
    for label in sorted(by_class):
        keep.update(rng.sample(by_class[label], shot))
    return [s for i, s in enumerate(samples) if i in keep]


def subset_classes(samples: Sequence[Sample], keep: Sequence[int]) -> list[Sample]:
    """Samples of the classes ``keep`` (original ids), labels remapped to positions in ``keep``."""
    remap = {c: i for i, c in enumerate(keep)}
    return [Sample(s.path, remap[s.label], s.where) for s in samples if s.label in remap]
