# Two-command start: `make train` and `make test` create .venv on first use, then reuse it.
PYTHON ?= python3
VENV ?= .venv
# torch==2.13.0 takes the local CPU wheel on the development machine and the CUDA build from PyPI on
# other Linux hosts; set TORCH_INDEX=https://download.pytorch.org/whl/cpu for a CPU-only build elsewhere.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
SPEC ?= specs/navigation-2d.yaml
OBSERVERS ?= 2
ARGS ?=
BIN := $(VENV)/bin

.PHONY: train test bench clean-venv

$(VENV)/.installed: pyproject.toml install.sh
	PYTHON=$(PYTHON) TORCH="$(TORCH)" TORCH_INDEX="$(TORCH_INDEX)" ./install.sh $(VENV) test
	touch $@

train: $(VENV)/.installed
	$(BIN)/python launch.py train --spec $(SPEC) --observers $(OBSERVERS) $(ARGS)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q $(ARGS)

bench: $(VENV)/.installed
	$(BIN)/python bench/meta_iteration.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
