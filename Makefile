# breakeven: the two commands a fresh machine needs are `make calibrate` and
# `make test`.  Both create .venv with the Python found below and install the
# package into it for real (a wheel built by pip, not an editable install), so
# the tests exercise what a user gets.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# Re-install only when something that goes into the wheel changed.
SOURCES := $(shell find src -type f -not -name '*.pyc') meson.build pyproject.toml

.PHONY: all install test calibrate bench lint clean help

all: test

help:
	@echo "make calibrate  build, install into $(VENV), calibrate this host, write its profile"
	@echo "make test       build, install into $(VENV) and run the test suite"
	@echo "make bench      serial/parallel/NumPy benchmark tables (benchmarks/)"
	@echo "make lint       ruff and cython-lint"
	@echo "make clean      remove $(VENV) and build artefacts"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(PY) $(SOURCES)
	$(PIP) install ".[test,lint]"
	@touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

calibrate: install
	$(VENV)/bin/breakeven calibrate
	@echo "plot it: $(VENV)/bin/breakeven plot -o calibration.png"

# The benchmarks compare against NumPy's own BLAS kernel: OPENBLAS_CORETYPE
# and OPENBLAS_L2_SIZE (which may force an older kernel) are unset here only.
bench: install
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_kernels.py \
	    --output benchmarks/results/kernels.md
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_calibration.py \
	    --output benchmarks/results/calibration.md --keep build/calibration-runs
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_dispatch.py \
	    --output benchmarks/results/dispatch.md

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cython-lint src/breakeven

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
