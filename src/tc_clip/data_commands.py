"""Deprecated: :mod:`tc_clip.cli.data_commands`."""

from tc_clip._deprecation import moved

__getattr__, __dir__ = moved(__name__, {name: "tc_clip.cli.data_commands" for name in (
    "STAGES", "DataOnlyCLI", "build_datamodule", "run_data_command",
)})
