# The whole set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: install demo test test-zoo perf clean

install: $(STAMP)

# torch first, pinned: an unpinned resolve pulls a CUDA build of several GB.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgestill demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest

# the heavy cells of the zoo × format export matrix (about 12 minutes on 2 cores)
test-zoo: $(STAMP)
	$(PY) -m pytest -m zoo tests/export/test_zoo_matrix.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .edgestill .pytest_cache
