"""Shared test settings."""

from __future__ import annotations

import sys

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine a busy core makes
    OpenMP barriers spin (one test went from 0.9 s to 119 s); one thread keeps the suite fast and stable."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    """Tests give the CLI its arguments as a list; pytest's own command line must not look like a second
    set of them (LightningCLI warns when ``args=`` and ``sys.argv[1:]`` are both given)."""
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
