"""Deprecated: ``python -m tc_clip.results`` is ``tc-clip report`` (:mod:`tc_clip.cli.report`, reached through
the forwarding of :mod:`tc_clip.results`' moved names)."""

import sys
import warnings

from tc_clip import results
from tc_clip._deprecation import warn_moved

warn_moved("python -m tc_clip.results", "tc-clip report", stacklevel=2)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # one warning: the command's
    report_main = results.report_main
sys.exit(report_main())
