# Two commands do everything on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make demo   - set up (if needed) and run the whole workflow on the embedded demo dataset
#   make test   - set up (if needed) and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.groot-ft-installed
CORES ?= all

.PHONY: install demo test parity-lerobot clean-demo

install: $(STAMP)

# Re-runs only when the lock or the package metadata change, so a second
# `make install` takes well under a second.
$(STAMP): requirements.lock constraints.txt pyproject.toml
	@# Debian/Ubuntu ship venv separately; install it when we can (root), otherwise say what to do
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; } || \
		{ echo "error: $(PYTHON) lacks venv; run: sudo apt-get install python3-venv" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -r requirements.lock
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps -e .
	$(BIN)/python -c "import groot_ft, torch, deepspeed, av; print('groot-ft installed; torch', torch.__version__)"
	touch $(STAMP)

demo: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --directory . --snakefile workflow/Snakefile

# Two pytest workers, one test file each at a time (module fixtures run once): a whole-workflow test leaves a core
# idle for much of its run, so two workers fill both of a 2-core machine (docs/benchmarks.md). TEST_WORKERS=0 runs
# in this process alone; more workers need memory for that many workflows at once.
TEST_WORKERS ?= 2
test: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -x -q -n $(TEST_WORKERS) --dist loadfile tests

# Opt-in: numeric parity of GR00T N1.7 with LeRobot 0.6.1's port. Builds LeRobot's own environment (once, ~1.5 min,
# in ~/.cache or $$LEROBOT_VENV) with ../shared/tools/lerobot-0.6.1 and compares on a tiny geometry.
parity-lerobot: install
	GROOT_FT_LEROBOT=1 PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -rs -s \
		tests/model/test_n17_lerobot_parity.py

clean-demo:
	rm -rf results .snakemake
