# Two commands do all the set-up: `make demo` (train the tiny demo model offline) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test lint bench gpu-check notebooks clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev]" $(TORCH_PIN)
	touch $@

demo: venv
	$(VENV)/bin/tc-clip fit --config configs/demo.yaml

test: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks

# the notebooks headless, with nbclient's jupyter-execute (in .[dev]): executed copies notebooks/*_executed.ipynb
notebooks: venv
	$(VENV)/bin/jupyter-execute --output '{notebook_name}_executed' notebooks/inference.ipynb notebooks/context_tokens.ipynb

bench: venv
	$(PY) benchmarks/model_speed.py
	$(PY) benchmarks/data_speed.py

# the checks only a GPU can answer, as one Markdown table (under 8 minutes on one GPU; a tiny CPU run without one)
gpu-check: venv
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
