# The whole set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: install browser sshd demo test test-zoo perf clean

install: $(STAMP)

# torch first, pinned: an unpinned resolve pulls a CUDA build of several GB.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,hf,llm,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgestill demo --out $(DEMO_OUT)

# The browser tests drive Debian's chromium through playwright (no browser download): install it where missing.
# CI runs as root on a fresh Debian machine; EDGESTILL_SKIP_BROWSER=1 skips this and those tests locally (not in CI).
browser:
	@if [ "$$EDGESTILL_SKIP_BROWSER" = 1 ] && [ -z "$$CI" ]; then \
		echo "EDGESTILL_SKIP_BROWSER=1: not installing chromium; the browser tests will be skipped"; \
	elif ! command -v chromium >/dev/null 2>&1; then \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; } || { \
		echo "make test needs Debian's chromium for the browser tests: run 'apt-get install chromium' as root," \
		     "or set EDGESTILL_SKIP_BROWSER=1 to skip them on this machine"; exit 1; }; \
	fi

# The SSH transport and device-lab tests start real OpenSSH servers on 127.0.0.1: install Debian's openssh-server where
# /usr/sbin/sshd is missing (CI runs as root on a fresh Debian machine; elsewhere those tests are skipped without it).
sshd:
	@if [ ! -x /usr/sbin/sshd ]; then \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server; } || { \
		echo "make test needs Debian's openssh-server for the SSH tests: run 'apt-get install openssh-server' as root" \
		     "(outside CI the SSH tests are skipped without it)"; [ -z "$$CI" ] || exit 1; }; \
	fi

test: $(STAMP) browser sshd
	$(PY) -m pytest

# the heavy cells of the zoo × format export matrix (about 12 minutes on 2 cores)
test-zoo: $(STAMP)
	$(PY) -m pytest -m zoo tests/export/test_zoo_matrix.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .edgestill .pytest_cache
