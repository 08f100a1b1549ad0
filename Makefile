# paperzoo: the developer commands. CI runs the same ones (.ci/run).
#   make test                       create .venv if missing, install everything editable, test every package
#   make test PKG=dckd              ... only shared's install + that package's tests
#   make test ARGS="-m slow" TEST_FLAGS=--allow-empty   the slow suites (packages without one pass)
#   make wheel-smoke [PKG=dckd]     build the wheels, install them into a fresh venv, smoke-run from outside
#   make reproduce                  `paperzoo reproduce --all --preset smoke`
#   make reproduce PKG=dckd PRESET=mini
#   make lint                       ruff, import-linter contracts, workflow schema, layout checks
#   make bench PKG=dynamic_llava    the package's CPU benchmark (benchmarks/<pkg>_*.py)
#   make mutate PKG=videomme        mutation testing (mutmut) of the package's core files; prints survivors
#   make system-deps                Debian packages some tests need (espeak-ng: vita's spoken questions); needs root

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := $(patsubst packages/%/pyproject.toml,%,$(wildcard packages/*/pyproject.toml))
PKG ?=
PRESET ?= smoke
ARGS ?=
STAMP := $(VENV)/.paperzoo-installed
# pip warns once per package about this machine's local package mirrors that lack it; harmless.
PIP_NOISE := is ignored: it is neither a file nor a directory

.PHONY: install test wheel-smoke reproduce lint fmt bench mutate report clean-venv system-deps

# The stamp depends on every pyproject.toml, so a second `make test` installs nothing
# and a changed or new package reinstalls.
$(STAMP): pyproject.toml shared/pyproject.toml $(wildcard packages/*/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1" 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(BIN)/python -m pip install --quiet --group dev -e "shared[test]" $(foreach p,$(PACKAGES),-e "packages/$(p)[test]") \
		2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	@touch $@

install: $(STAMP)

# espeak-ng synthesises vita's spoken questions (its mini and the tests that need speech, which skip without it).
SYSTEM_PACKAGES := espeak-ng
system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do command -v $$p > /dev/null || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		command -v apt-get > /dev/null || { echo "install $$missing with your system's package manager"; exit 1; }; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq $$missing > /dev/null || \
		{ $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq $$missing; }; \
	fi

test: $(STAMP)
	$(BIN)/python tools/run_tests.py $(TEST_FLAGS) $(if $(PKG),$(PKG),shared $(PACKAGES)) $(if $(ARGS),-- $(ARGS))

# Wheels of shared and every package, installed with plain pip into a fresh venv (build/wheel-venv) and run
# from a folder outside the checkout (tools/wheel_smoke.sh).
wheel-smoke: $(STAMP)
	rm -rf build/wheels build/wheel-venv
	mkdir -p build
	{ $(BIN)/python -m build --wheel --outdir build/wheels shared $(foreach p,$(PACKAGES),&& $(BIN)/python -m build --wheel --outdir build/wheels packages/$(p)); } > build/wheel-build.log 2>&1 || { tail -30 build/wheel-build.log; exit 1; }
	$(PYTHON) -m venv build/wheel-venv
	build/wheel-venv/bin/python -m pip install --quiet "pip>=25.1" 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	build/wheel-venv/bin/python -m pip install --quiet build/wheels/*.whl 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	bash tools/wheel_smoke.sh build/wheel-venv $(PKG) $(if $(PKG),,$(PACKAGES))

reproduce: $(STAMP)
ifeq ($(PKG),)
	$(BIN)/paperzoo reproduce --all --preset $(PRESET)
else
	$(BIN)/paperzoo reproduce $(PKG) --preset $(PRESET)
endif

report: $(STAMP)
	$(BIN)/paperzoo report

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/check_layout.py
	$(BIN)/lint-imports
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/paperzoo report --check

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	@test -n "$(PKG)" || { echo "usage: make bench PKG=<package>"; exit 2; }
	for script in benchmarks/$(PKG)_*.py; do $(BIN)/python $$script $(ARGS) || exit 1; done

mutate:
	@test -n "$(PKG)" || { echo "usage: make mutate PKG=<package>"; exit 2; }
	$(BIN)/python tools/mutate.py $(PKG) $(ARGS)

clean-venv:
	rm -rf $(VENV)
