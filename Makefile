# Everything installs itself: a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the build tools of `make dist` too
DIST_STAMP := $(VENV)/.dist-installed

.PHONY: demo test test-fault bench bench-deps lint typecheck system-deps tools clean dist

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The zdb:// store tests need a real Redis-protocol server, the hub page's tests a real browser and
# its WebDriver; as root we install Debian's (redis-server, chromium, chromium-driver).
SYSTEM_PACKAGES := redis-server:redis-server chromium:chromium chromedriver:chromium-driver
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	[ -z "$$missing" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing: install them (apt-get install$$missing)" >&2; exit 1; fi; }

# The real 0-OS tools the suite tests against (zdb, zflist, the real 0-hub in its own venv), built
# from ../shared/upstream/ or the same pinned commits on GitHub into .cache/upstream/ (cached per commit)
tools:
	$(PYTHON) tools/build_upstream.py

demo: $(STAMP)
	$(VENV)/bin/zos-upgrade demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools packaging
	$(VENV)/bin/mypy --strict src packaging/build.py

# pytest exits 5 when a filter selects nothing: that is not a failure. The tests wait on real servers
# and child processes far more than they compute, so they run in 4 workers (TEST_WORKERS=0: in one).
TEST_WORKERS ?= 4
test: $(STAMP) system-deps tools lint
	$(PY) -m pytest -q -m "not fault" -n $(TEST_WORKERS) $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

# the fault suite also builds the one-file executable and proves self-update with it (tests/dist)
test-fault: $(DIST_STAMP) system-deps tools
	$(PY) -m pytest -q -m fault --timeout=1800 $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

# dist/: the one-file executable (no Python needed on the node), the wheel and sdist, the .deb
$(DIST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,dist]'
	touch $(DIST_STAMP)

dist: $(DIST_STAMP)
	$(PY) packaging/build.py all

# benchmarks/compare.py's anchors (OSTree, casync, rsync, curl): installed as root like system-deps;
# compare.py installs them itself too when run alone
BENCH_PACKAGES := ostree:ostree casync:casync rsync:rsync curl:curl
bench-deps:
	@$(MAKE) --no-print-directory system-deps SYSTEM_PACKAGES="$(BENCH_PACKAGES)"

bench: $(STAMP) tools bench-deps
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

clean-tools:
	rm -rf .cache/upstream
