# One command per job. Each target creates .venv and installs what it needs.
PY       ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
# Worker processes for make test (pytest-xdist); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 3
BENCH ?=

.PHONY: demo test soak lint bench clean venv system-deps wheel-check readme report-screenshot

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,demo,collector]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

## Binaries the integration tests drive: mosquitto (broker), socat (RTU pty pair),
## mbpoll (third-party Modbus client). Installed from Debian when missing and root.
## PostgreSQL (collector tests) is started when installed but stopped.
system-deps:
	@bash scripts/ensure-system-deps.sh
	@bash scripts/ensure-postgres.sh

demo: venv
	$(BIN)/edge-agent demo

test: venv system-deps
	$(BIN)/python -m pytest -m "not soak" -n $(TEST_WORKERS) $(PYTEST_ARGS)

soak: venv system-deps
	$(BIN)/python -m pytest -m soak $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: venv system-deps
	$(BIN)/python -m benchmarks $(BENCH)

## Build the wheel, install it in a fresh venv and run it from outside the source tree.
wheel-check: venv
	bash scripts/wheel-check.sh

readme: venv
	$(BIN)/python scripts/build_readme.py

## docs/img/report.png (the README's report picture): runs the demo ~45 s, renders its
## report, headless Chromium takes the screenshot (docs/report.md).
report-screenshot: venv system-deps
	$(BIN)/python scripts/report_screenshot.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis .bench
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
