"""Listed videos that are not where their list says, found by name in the usual layouts.

The public list files name videos as their authors stored them (HMDB-51's give bare file names), while
a dataset on disk may be flat, one folder per class, or below the official ``videos/`` folder. A
:class:`VideoLocator` looks a missing entry up by its file name below ``root`` in exactly these places:

- flat: ``root/<name>``, ``root/<F>/<name>``;
- one folder per class: ``root/<class>/<name>``, ``root/<F>/<class>/<name>``, the class known from the
  entry's label (folder names compared without case, spaces and punctuation: ``brush_hair`` = ``Brush
  Hair``) or, for UCF-101's ``v_<Class>_gXX_cXX`` names, from the name;

where ``<F>`` is ``videos`` or a benchmark's own videos folder (``UCF-101``, ``hmdb51``, ...). A name
found in two of them is an error naming both; a list none of whose videos is anywhere is an error
saying which layouts were tried (:meth:`VideoLocator.check_found`, when its clips are about to be made).
Cheap for Kinetics-size trees: whether an entry exists is read from
one listing of each listed folder, and the file names below ``root`` (two folders deep) are indexed
only when some entry is missing, once per locator.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tc_clip.data.annotations import Sample
from tc_clip.data.errors import UnfoundVideosWarning, VideoLayoutError
from tc_clip.data.splits import SplitData

__all__ = ["VideoLocator", "VideoLocators"]

_UCF_NAME = re.compile(r"^v_(.+?)_g\d+_c\d+\.", re.IGNORECASE)


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _problem(errors: list[str] | None, msg: str) -> None:
    if errors is None:
        raise VideoLayoutError(msg)
    errors.append(msg)


class VideoLocator:
    """Finds listed videos below ``root`` by file name in the usual layouts (see the module docstring);
    ``video_folders``: the videos folders ``<F>`` besides ``videos``. ``notes`` collects one line per
    list whose entries were looked up (``tc-clip check-data`` prints them)."""

    def __init__(self, root: str | os.PathLike, video_folders: Sequence[str] = ()):
        self.root = Path(root)
        self.video_folders = tuple(dict.fromkeys(f for f in (*video_folders, "videos") if f))
        self._index: dict[str, list[tuple[str, ...]]] | None = None
        self.notes: list[str] = []
        #: listed path -> the message saying where it was looked for, for the entries found nowhere
        self.unfound: dict[str, str] = {}

    def _build_index(self) -> dict[str, list[tuple[str, ...]]]:
        """File name -> folders (relative to ``root``) holding it, for the folders a layout may use."""
        index: dict[str, list[tuple[str, ...]]] = {}

        def scan(folder: Path, rel: tuple[str, ...], depth: int) -> None:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                return
            for e in entries:
                if e.is_dir():
                    if depth == 0 or (depth == 1 and rel[0] in self.video_folders):
                        scan(Path(e.path), (*rel, e.name), depth + 1)
                else:
                    index.setdefault(e.name, []).append(rel)

        scan(self.root, (), 0)
        return index

    def _layout(self, folders: tuple[str, ...], classes: set[str]) -> str | None:
        """Which layout a file in ``folders`` (relative to ``root``) is in, for an entry of ``classes``."""
        if folders and folders[0] in self.video_folders and (len(folders) == 1 or _key(folders[1]) in classes):
            inner = "flat" if len(folders) == 1 else "one folder per class"
            return f"{inner} in {folders[0]}/"
        if not folders:
            return "flat"
        if len(folders) == 1 and _key(folders[0]) in classes:
            return "one folder per class"
        return None

    def tried(self, name: str, class_name: str | None) -> str:
        """The places looked in for ``name``, for messages."""
        cls = class_name or "<class>"
        places = [f"{name} (flat)", f"{cls}/{name} (one folder per class)"]
        places += [f"{f}/{name}, {f}/{cls}/{name}" for f in self.video_folders]
        return f"below {self.root}: " + "; ".join(places)

    def check_found(self, split: SplitData) -> None:
        """Raise :class:`VideoLayoutError` (with the layouts tried) when none of ``split``'s videos exists."""
        if split.samples and all(x.path in self.unfound for x in split.samples):
            raise VideoLayoutError(f"{split.name}: no video found. {self.unfound[split.samples[0].path]}")

    def locate(self, split: SplitData, source: str, errors: list[str] | None = None) -> SplitData:
        """``split`` with each entry missing where its list says replaced by the one file of that name in
        the usual layouts; entries found nowhere stay as listed (a warning names the layouts tried). A
        name in two places is an error (collected in ``errors`` when given)."""
        listings: dict[str, set[str] | None] = {}

        def exists(path: str) -> bool:
            folder, name = os.path.split(path)
            if folder not in listings:
                try:
                    listings[folder] = set(os.listdir(folder or "."))
                except OSError:
                    listings[folder] = None
            names = listings[folder]
            return names is not None and name in names

        present = [exists(s.path) for s in split.samples]
        for s in (s for s, here in zip(split.samples, present, strict=True) if here and self.unfound):
            self.unfound.pop(s.path, None)  # there since an earlier read
        missing = [i for i, here in enumerate(present) if not here]
        if not missing:
            return split
        if self._index is None:
            self._index = self._build_index()
        samples, layouts, unfound = list(split.samples), Counter(), []
        for i in missing:
            s = samples[i]
            name = os.path.basename(s.path)
            cls = split.class_names[s.label] if 0 <= s.label < len(split.class_names) else None
            classes = {_key(cls)} if cls else set()
            if m := _UCF_NAME.match(name):
                classes.add(_key(m.group(1)))
            hits = [(f, lay) for f in self._index.get(name, []) if (lay := self._layout(f, classes))]
            if len(hits) > 1:
                both = " and ".join(str(self.root.joinpath(*f, name)) for f, _ in hits)
                _problem(errors, f"{s.where}: {name!r} is not at {s.path} and is in two places: {both}; "
                                 "keep one, or list the video by its path")
            elif hits:
                folders, layout = hits[0]
                samples[i] = Sample(str(self.root.joinpath(*folders, name)), s.label, s.where)
                layouts[layout] += 1
            else:
                unfound.append((s, name, cls))
        n = len(split.samples)
        if layouts:
            found = ", ".join(f"{k} in {lay}" for lay, k in layouts.most_common())
            self.notes.append(f"{source}: {sum(layouts.values())} of {n} videos not where the list says were "
                              f"found by name below {self.root}: {found}")
        if unfound:
            s, name, cls = unfound[0]
            msg = (f"{len(unfound)} of {n} videos listed in {source} are neither where the list says nor, by "
                   f"name, in the layouts tried (first: {s.where}: {s.path}; looked for {name!r} "
                   f"{self.tried(name, cls)}); set the root (or videos_dir) to the folder that holds them")
            self.notes.append(msg)
            self.unfound.update((u.path, msg) for u, _, _ in unfound)
            warnings.warn(msg, UnfoundVideosWarning, stacklevel=2)
        return SplitData(split.name, samples, split.class_names, split.display_names, split.group, split.role,
                         split.number)


class VideoLocators:
    """A data module's locators: one per list root, each indexing its tree at most once."""

    def __init__(self, video_folders: Sequence[str] = ()):
        self.video_folders = tuple(video_folders)
        self._by_root: dict[str, VideoLocator] = {}

    def locate(self, split: SplitData, root: str | None, source: str, errors: list[str] | None) -> SplitData:
        """``split`` looked up below ``root`` (:meth:`VideoLocator.locate`); unchanged without a root."""
        if root is None:
            return split
        if root not in self._by_root:
            self._by_root[root] = VideoLocator(root, self.video_folders)
        return self._by_root[root].locate(split, source, errors)

    def check_found(self, splits: Sequence[SplitData]) -> None:
        """:meth:`VideoLocator.check_found` for every split and root."""
        for split in splits:
            for locator in self._by_root.values():
                locator.check_found(split)

    @property
    def notes(self) -> list[str]:
        return list(dict.fromkeys(n for loc in self._by_root.values() for n in loc.notes))
