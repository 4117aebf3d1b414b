# Two entry points, both self-contained from a fresh clone:
#   make demo   -- create .venv, install Durable, run the crash-and-resume demo on embedded SQLite
#   make test   -- create .venv, install Durable with test extras, lint, type-check, build the
#                  docs site (strict), run every test
#                  and the suite's core again on the newest Python the machine has (test-newest)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml tests/conformance/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# AWS's conformance requirements: their metadata asks for Python 3.14, their code runs on
	# ours; pinned by hash, without dependencies (boto3 and PyYAML come with the dev extra).
	$(BIN)/pip install -q --no-deps --ignore-requires-python --require-hashes \
	    -r tests/conformance/requirements.txt
	touch $(STAMP)

.PHONY: demo test lint bench docs
demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks docs
	$(BIN)/mypy

# The suite runs in TEST_WORKERS processes (pytest-xdist): most tests wait on worker
# subprocesses, a server, a browser or the database rather than on the CPU, so more processes
# than cores pay. --dist loadfile keeps each module's tests together, one after another as when
# run alone: its module-scoped fixtures (a server, a browser, a built wheel) are set up once,
# and the largest modules start first. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 3
PARALLEL := -n $(TEST_WORKERS) --dist loadfile

# The checks before the suite, and the newest Python's venv (pip's downloads, about 2 minutes on
# a fresh clone), side by side: their output stays grouped per target.
test: $(STAMP)
	$(MAKE) -j4 --output-sync=target lint docs chromium $(NEWEST_VENV)/.installed
	$(BIN)/pytest -q $(PARALLEL)
	$(MAKE) test-newest

# The site, strict: a broken link, a stale reference or a missing page fails the build (not
# --quiet: MkDocs then counts no warnings, and strict passes anything). Built
# into a temporary directory, removed after (SITE=site keeps it there: site/ is git-ignored).
SITE ?=
docs: $(STAMP)
	@out="$(SITE)"; if [ -z "$$out" ]; then out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; fi; \
	    NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir "$$out"

# The UI tests drive Debian's Chromium (Playwright never downloads a browser here): installed
# only when missing, so a machine that has it runs no apt-get at all.
.PHONY: chromium
chromium:
	@test -x /usr/bin/chromium || { apt-get update -q && apt-get install -y -q chromium; }

bench: $(STAMP)
	$(BIN)/python benchmarks/steps.py

# The suite's core on the newest Python this machine has too (.ci/newest-python finds it; set
# NEWEST_PYTHON to choose): the SDK and replay, both stores' contract, both clients, reruns
# with their SIGKILL tests. A subset, so CI stays well inside its time: about 4 minutes in one
# process.
NEWEST_VENV := .venv-newest
NEWEST_TESTS := tests/test_workflows.py tests/test_store_contract.py tests/test_async_client.py \
	tests/test_rerun_patch.py tests/test_testing.py tests/test_composition.py \
	tests/test_layering.py tests/test_merge_patch.py tests/test_step_io.py

$(NEWEST_VENV)/.installed: pyproject.toml
	python=$${NEWEST_PYTHON:-$$(.ci/newest-python)} && $$python -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/pip install -q --upgrade pip
	$(NEWEST_VENV)/bin/pip install -q -e '.[dev]'
	touch $@

.PHONY: test-newest
test-newest: $(NEWEST_VENV)/.installed
	@$(NEWEST_VENV)/bin/python -c 'import sys; print("the suite on Python", sys.version)'
	$(NEWEST_VENV)/bin/pytest -q $(PARALLEL) $(NEWEST_TESTS)
