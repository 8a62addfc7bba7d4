"""The errors a user can cause: bad options, missing or unreadable files, values that cannot work.

``tc-clip`` ends on a :class:`UserError` with one ``tc-clip: error: ...`` line (its message names the file,
option or line at fault and what to do) instead of a traceback; ``--traceback`` or ``TC_CLIP_TRACEBACK=1``
shows the stack. Each project error type derives from :class:`UserError` and from the built-in type it had
before (``CheckpointError`` is still a ``ValueError``), so existing ``except`` clauses keep working. This
module imports nothing from the project, so every layer may derive from it (the data layer's errors are
:mod:`tc_clip.data.errors`).
"""

from __future__ import annotations

__all__ = ["ConfigError", "MissingFileError", "UserError"]


class UserError(Exception):
    """An error the user can fix; the message says what is at fault and what to do."""


class ConfigError(UserError, ValueError):
    """Options that parse but cannot work together (found once the run is being built or started)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file an option names is not there; the message names the option."""
