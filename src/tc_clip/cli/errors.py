"""How ``tc-clip`` ends on an error the user caused: one ``tc-clip: error: ...`` line and exit status 1,
like a config error, instead of a traceback. ``--traceback`` (or ``TC_CLIP_TRACEBACK=1``) shows the stack.

User errors are the project's :class:`~tc_clip.errors.UserError` types, and the ``ValueError``/``OSError``/
``RuntimeError`` that the data layer raises about its files (a missing list, an unreadable label file, a
split folder that is not there), also when they come back from a DataLoader worker. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable

from tc_clip.errors import UserError


class UsageError(Exception):
    """A command line that does not parse (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse for the argparse-based subcommands (prepare, export, serve): a command line that does not
    parse raises :class:`UsageError` (``<subcommand>: <reason>``) for one ``tc-clip: error:`` line."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        raise UsageError(f"{self.prog.removeprefix('tc-clip ')}: {message}")


TRACEBACK_FLAG = "--traceback"
TRACEBACK_ENV = "TC_CLIP_TRACEBACK"
#: modules whose ValueError/OSError/RuntimeError are about the user's files, not bugs
DATA_MODULES = ("tc_clip.data",)
_DATA_TYPES = (ValueError, OSError, RuntimeError)
_WORKER = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\s*\nOriginal Traceback")


def _raised_in(err: BaseException, prefixes: tuple[str, ...]) -> bool:
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    name = tb.tb_frame.f_globals.get("__name__", "")
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _worker_error(text: str) -> tuple[str, str]:
    """``(file of the raising frame, original message)`` of an error a DataLoader worker re-raised with the
    worker's traceback as its message."""
    tail = text.rsplit('\n  File "', 1)[-1]
    path = tail.split('"', 1)[0].replace(os.sep, "/")
    lines = tail.split("\n")[1:]
    first = next((i for i, line in enumerate(lines) if line and not line.startswith(" ")), len(lines))
    final = "\n".join(lines[first:]).strip()
    return path, final.partition(": ")[2] or final


def user_message(err: BaseException) -> str | None:
    """The message to print for an error the user caused; ``None`` for anything else (a bug)."""
    text = str(err)
    if _WORKER.search(text):
        path, text = _worker_error(text)
        in_data = any(f"/{p.replace('.', '/')}/" in path for p in DATA_MODULES)
        if isinstance(err, UserError) or (isinstance(err, _DATA_TYPES) and in_data):
            return text
        return None
    if isinstance(err, UserError) or (isinstance(err, _DATA_TYPES) and _raised_in(err, DATA_MODULES)):
        if isinstance(err, OSError) and err.filename and err.strerror and not isinstance(err, UserError):
            return f"{err.filename}: {err.strerror.lower()} (check the option or list that names it)"
        return text or type(err).__name__
    return None


def wants_traceback(words: list[str]) -> bool:
    """Removes ``--traceback`` from ``words``; true when given there or by the environment."""
    given = TRACEBACK_FLAG in words
    words[:] = [w for w in words if w != TRACEBACK_FLAG]
    return given or os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def report_user_errors(command: Callable[[], int], traceback: bool) -> int:
    """Runs ``command``; a user error ends as one ``tc-clip: error:`` line and status 1 (unless ``traceback``)."""
    try:
        return command()
    except Exception as err:  # noqa: BLE001 - only user errors are reported here; the rest is re-raised
        message = None if traceback else user_message(err)
        if message is None:
            raise
        print(f"tc-clip: error: {message}", file=sys.stderr)
        return 1
