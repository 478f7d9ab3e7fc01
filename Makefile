# The two set-up commands: `make demo` and `make test`. Both work from a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned so pip takes the CPU build instead of a multi-GB CUDA one.
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/imgclust demo --out runs/demo

test: $(STAMP) lint
	$(BIN)/python -m pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: $(STAMP)
	$(BIN)/python benchmarks/embed.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
