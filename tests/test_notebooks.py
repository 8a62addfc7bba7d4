"""The notebooks run top to bottom, offline, from a temporary working directory, and are stored clean.

The kernel is this interpreter (a kernelspec written to a temporary ``JUPYTER_PATH``), so the test does not
depend on any kernel installed on the machine. Each notebook runs once on whatever
:func:`tc_clip.inference.load_demo_model` finds (the demo checkpoint after ``make demo``, else the random
tiny fallback); ``$TC_CLIP_DEMO_CHECKPOINT=none`` forces the fallback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "tc-clip-test"
CELL_TIMEOUT = 60  # seconds per cell
TOTAL_BUDGET = 120  # seconds for one notebook, kernel start included

# figures each notebook must show (image/png outputs)
EXPECTED_FIGURES = {"inference.ipynb": 1, "context_tokens.ipynb": 4}


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec running ``sys.executable``, found first on ``JUPYTER_PATH``."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tc-clip test kernel",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    workdir = tmp_path / "work"
    workdir.mkdir()
    return workdir


def _outputs(nb) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_notebook_is_stored_without_outputs(name):
    text = (NOTEBOOKS / name).read_text()
    assert '"output_type"' not in text
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is None
            assert not cell.outputs


@pytest.mark.parametrize("name", sorted(EXPECTED_FIGURES))
def test_notebook_runs_top_to_bottom(name, kernel_env):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT,
        startup_timeout=60,
        allow_errors=False,
        resources={"metadata": {"path": str(kernel_env)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - start
    assert elapsed < TOTAL_BUDGET, f"{name} took {elapsed:.0f} s"

    outputs = _outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= EXPECTED_FIGURES[name], f"{name} showed {len(figures)} figures"
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    # the model cell says which model is used: the demo checkpoint or the explicit random fallback
    assert "demo model loaded from" in text or "RANDOM tiny model" in text
    assert not list(kernel_env.iterdir()), "the notebook wrote into its working directory"


def test_make_notebooks_command_executes_a_notebook_headless(tmp_path):
    """``make notebooks`` (the README's headless way) with the tools of ``.[dev]``: nbclient's
    ``jupyter-execute`` writes an executed copy next to the notebook (here a one-cell notebook)."""
    import shlex
    import subprocess

    recipe = (NOTEBOOKS.parent / "Makefile").read_text().split("\nnotebooks: venv\n\t", 1)[1].split("\n", 1)[0]
    words = shlex.split(recipe)
    assert words[0] == "$(VENV)/bin/jupyter-execute" and words[1] == "--output"
    assert words[3:] == [f"notebooks/{n}" for n in ("inference.ipynb", "context_tokens.ipynb")]
    assert all((NOTEBOOKS.parent / w).is_file() for w in words[3:])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    tool = Path(sys.executable).parent / "jupyter-execute"
    subprocess.run([str(tool), *words[1:3], str(tmp_path / "tiny.ipynb")], check=True, timeout=120,
                   capture_output=True)
    done = nbformat.read(tmp_path / "tiny_executed.ipynb", as_version=4)
    assert done.cells[0].outputs[0]["text"].strip() == "42"
    assert not nbformat.read(tmp_path / "tiny.ipynb", as_version=4).cells[0].outputs  # the input stays clean
