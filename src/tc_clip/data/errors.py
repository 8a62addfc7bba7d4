"""Data errors a user causes and can fix: each names the file, folder or option at fault and what to do.

They are :class:`ValueError` s (callers that collect list problems, such as ``tc-clip check-data``, catch
them as such); the ``tc-clip`` command prints them as one ``tc-clip: error:`` line, without a traceback.
"""

from __future__ import annotations

from tc_clip.errors import UserError

__all__ = ["DataError", "SplitFilesNotFoundError", "VideoLayoutError"]


class DataError(UserError, ValueError):
    """A problem of the data or the data options, said with the file or option at fault."""


class SplitFilesNotFoundError(DataError):
    """A benchmark's official split files (``testTrainMulti_7030_splits/``, ``ucfTrainTestlist/``) are
    missing; the message names the folders looked in and the list options that serve instead."""


class VideoLayoutError(DataError):
    """A listed video is not where its list says and its name is in two of the usual layouts, or none
    of a list's videos is anywhere (:mod:`tc_clip.data.layouts`)."""
