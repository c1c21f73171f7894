# breakeven: the two commands a fresh machine needs are `make calibrate` and
# `make test`.  Both create .venv with the Python found below and install the
# package into it for real (a wheel built by pip, not an editable install), so
# the tests exercise what a user gets.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# Re-install only when something that goes into the wheel changed.
SOURCES := $(shell find src -type f -not -name '*.pyc') meson.build meson.options pyproject.toml

.PHONY: all install test test-no-openmp test-libomp test-intel test-runtimes test-matrix calibrate bench bench-quick bench-simulated bench-scaling docs fuzz \
        reliability lint clean help

all: test

help:
	@echo "make calibrate  build, install into $(VENV), calibrate this host, write its profile"
	@echo "make test       build, install into $(VENV) and run the test suite"
	@echo "make test-no-openmp  the suite on a build without OpenMP (every kernel serial)"
	@echo "make test-libomp  the suite on a build with clang and LLVM libomp"
	@echo "make test-intel  the suite on the gcc build with Intel's libiomp5 preloaded"
	@echo "make test-runtimes  test-libomp, test-intel, then a quick calibration per runtime"
	@echo "make test-matrix  the suite on every Python 3.11+ found, oldest and newest NumPy"
	@echo "make bench      serial/parallel/NumPy benchmark tables (benchmarks/)"
	@echo "make bench-quick  the side-by-side benchmark on a few sizes (smoke run)"
	@echo "make bench-simulated  calibration on simulated 8- to 192-core hosts (seconds)"
	@echo "make bench-scaling  the simulated hosts, then speed-up against threads on this host"
	@echo "make docs       the Sphinx site in build/docs/html (warnings are errors)"
	@echo "make fuzz       the property-based tests with at least 10,000 examples"
	@echo "make reliability  fuzzing, faults, concurrency, fork and kill trials -> reliability/report.md"
	@echo "make lint       ruff and cython-lint"
	@echo "make clean      remove $(VENV) and build artefacts"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(PY) $(SOURCES)
	$(PIP) install ".[test,lint,docs]"
	@touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

# The build without OpenMP (meson option openmp=disabled), in a venv of its
# own; the suite holds it to what was asked (BREAKEVEN_EXPECT_OPENMP).
NOOMP := .venv-no-openmp
$(NOOMP)/.installed: $(SOURCES)
	$(PYTHON) -m venv $(NOOMP)
	$(NOOMP)/bin/python -m pip --disable-pip-version-check install --quiet --upgrade pip
	$(NOOMP)/bin/python -m pip --disable-pip-version-check install \
	    -Csetup-args=-Dopenmp=disabled ".[test]"
	@touch $@

# tests/ only: the guides' examples in docs/ show an OpenMP build's decisions.
test-no-openmp: $(NOOMP)/.installed
	BREAKEVEN_EXPECT_OPENMP=disabled $(NOOMP)/bin/python -m pytest -q -p no:cacheprovider tests

# The build with clang and LLVM's OpenMP runtime (libomp), in a venv of its
# own: the runtime macOS wheels ship.  Needs clang and libomp (Debian:
# `apt-get install clang libomp-dev`, which .ci/run does); the suite holds
# the build to them (BREAKEVEN_EXPECT_RUNTIME).
LIBOMP := .venv-libomp
$(LIBOMP)/.installed: $(SOURCES)
	$(PYTHON) -m venv $(LIBOMP)
	$(LIBOMP)/bin/python -m pip --disable-pip-version-check install --quiet --upgrade pip
	CC=clang CXX=clang++ $(LIBOMP)/bin/python -m pip --disable-pip-version-check \
	    install ".[test]"
	@touch $@

test-libomp: $(LIBOMP)/.installed
	BREAKEVEN_EXPECT_RUNTIME=clang:libomp $(LIBOMP)/bin/python -m pytest -q \
	    -p no:cacheprovider tests

# gcc's build with Intel's OpenMP runtime (libiomp5, from PyPI's
# intel-openmp) preloaded in place of libgomp, whose entry points it
# provides: the runtime conda environments carry.
INTEL := .venv-intel
IOMP  := $(CURDIR)/$(INTEL)/lib/libiomp5.so
$(INTEL)/.installed: $(SOURCES)
	$(PYTHON) -m venv $(INTEL)
	$(INTEL)/bin/python -m pip --disable-pip-version-check install --quiet --upgrade pip
	$(INTEL)/bin/python -m pip --disable-pip-version-check install ".[test]" intel-openmp
	@touch $@

test-intel: $(INTEL)/.installed
	LD_PRELOAD=$(IOMP) BREAKEVEN_EXPECT_RUNTIME=gcc:libiomp $(INTEL)/bin/python -m pytest -q \
	    -p no:cacheprovider tests

# Each runtime: the suite on clang + libomp and on gcc + Intel's runtime
# (`make test` is gcc + libgomp), then a quick calibration on all three,
# interleaved, into the record calibration/runtimes.md.
test-runtimes: install test-libomp test-intel
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) tools/runtimes.py \
	    --output calibration/runtimes.md

# Every Python from the lowest supported to 3.13 that this machine has, each
# with the oldest NumPy it can install that the package claims, and the
# newest; the table goes to tools/matrix.md (committed).
test-matrix:
	$(PYTHON) tools/matrix.py --output tools/matrix.md

calibrate: install
	$(VENV)/bin/breakeven calibrate
	@echo "plot it: $(VENV)/bin/breakeven plot -o calibration.png"

# The benchmarks compare against NumPy's own BLAS kernel: OPENBLAS_CORETYPE
# and OPENBLAS_L2_SIZE (which may force an older kernel) are unset here only.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(PIP) install ".[bench]"
	@touch $@

bench: $(VENV)/.bench-installed
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_kernels.py \
	    --output benchmarks/results/kernels.md
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_calibration.py \
	    --output benchmarks/results/calibration.md --keep build/calibration-runs
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_dispatch.py \
	    --output benchmarks/results/dispatch.md
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_peers.py \
	    --output benchmarks/results/peers.md
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_map.py \
	    --output benchmarks/results/map.md
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_zero_config.py \
	    --output benchmarks/results/zero_config.md
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_bursty.py \
	    --output benchmarks/results/bursty.md
	$(PY) benchmarks/bench_import.py --output benchmarks/results/import.md
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_kmeans.py \
	    --output benchmarks/results/kmeans.md
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_processes.py \
	    --output benchmarks/results/processes.md
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE GOMP_SPINCOUNT=10000 \
	    $(PY) benchmarks/bench_processes.py --output benchmarks/results/processes-spin.md

bench-quick: $(VENV)/.bench-installed
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_peers.py --quick \
	    --output build/peers-quick.md

docs: install
	$(PY) -m sphinx -W --keep-going -q -b html docs build/docs/html
	@echo "open build/docs/html/index.html"

fuzz: install
	$(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz.py --hypothesis-profile=fuzz

reliability: install
	$(PY) reliability/run.py --output reliability/report.md

lint: install
	$(VENV)/bin/ruff check src tests benchmarks tools docs/_ext docs/examples conftest.py
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cython-lint src/breakeven

clean:
	rm -rf $(VENV) $(NOOMP) $(LIBOMP) $(INTEL) build dist .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Calibration on simulated many-core hosts, in simulated time (a cost model).
bench-simulated: install
	$(PY) benchmarks/bench_simulated.py --output benchmarks/results/simulated.md \
	    --plot benchmarks/results/simulated.png

# Many-core behaviour: the simulated hosts, then the real run on this host
# (speed-up against threads per kernel, the calibrated table against the
# fastest count) into benchmarks/results/scaling-<host>.md.
bench-scaling: bench-simulated
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_scaling.py
