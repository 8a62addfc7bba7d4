"""Deprecated: ``python -m tc_clip.results`` is ``tc-clip report`` (:mod:`tc_clip.cli.report`)."""

import importlib
import sys

from tc_clip._deprecation import warn_moved

warn_moved("python -m tc_clip.results", "tc-clip report", stacklevel=2)
sys.exit(importlib.import_module("tc_clip.cli.report").main())
