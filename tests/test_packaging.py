"""Dependency declarations and test-suite hygiene (issue 11): every third-party module the package imports is
declared, every declared dependency is used, and the CLI in tests sees only the arguments a test gives it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before Python 3.11
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
#: Declared for what other packages load at run time, not imported by tc_clip itself.
RUNTIME_ONLY = {
    "jsonargparse": "LightningCLI parses the command line with it",
    "tensorboard": "Lightning's TensorBoardLogger",
}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported_top_level_modules() -> set[str]:
    found = set()
    for path in (REPO / "src" / "tc_clip").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("tc_clip", "__future__")}


def test_every_import_is_declared_and_every_dependency_used():
    core = {_name(r) for r in PROJECT["dependencies"]}
    optional = {_name(r) for reqs in PROJECT["optional-dependencies"].values() for r in reqs}
    dists = importlib.metadata.packages_distributions()
    used = set()
    for module in _imported_top_level_modules():
        names = {n.lower().replace("_", "-") for n in dists.get(module, [module])}
        assert names & (core | optional), f"tc_clip imports {module} ({names}) but pyproject.toml does not declare it"
        used |= names
    unused = core - used - set(RUNTIME_ONLY)
    assert not unused, f"declared but never imported: {unused}"
    assert "pyyaml" in core and "pytorchvideo" not in core | optional
    assert {"torchcodec", "litdata"} <= optional


def test_cli_in_tests_sees_only_its_own_arguments(recwarn):
    """pytest's own command line must not reach LightningCLI next to ``args=`` (tests/conftest.py)."""
    from tc_clip.cli import main

    with pytest.raises(SystemExit):
        main(["fit", "--config", str(REPO / "configs" / "demo.yaml"), "--print_config"])
    assert not [w for w in recwarn if "args parameter" in str(w.message)]
