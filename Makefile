# admire — every target sets itself up: `make study NAME=demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
NAME   ?= demo
ARGS   ?=

.PHONY: setup setup-browser study resume status best trials export list delete ui test bench bench-opt \
	faults lint clean-venv

setup: $(STAMP)

# torch goes in first and pinned: this disk holds its CPU wheel, and on a GPU box the same pin
# resolves to the CUDA build. pip then keeps it while installing the rest.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,corpus,ray,data]'
	@touch $(STAMP)

# Chromium and its driver for the real-browser test (tests/test_browser.py), from Debian's own
# packages: nothing is downloaded from elsewhere. Needs root (CI runs as root) or sudo.
setup-browser: setup
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "chromium and chromedriver are installed"; \
	else \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

study: setup
	$(BIN)/python -m admire run studies/$(NAME).yaml $(if $(OVERWRITE),--overwrite) $(ARGS)

resume: setup
	$(BIN)/python -m admire resume $(NAME) $(ARGS)

status: setup
	$(BIN)/python -m admire status $(NAME)

best: setup
	$(BIN)/python -m admire best $(NAME) $(ARGS)

trials: setup
	$(BIN)/python -m admire trials $(NAME) $(ARGS)

# The recommended mixture for a training config, e.g. ARGS="--tokens 2.5e10 --format json".
export: setup
	$(BIN)/python -m admire export $(NAME) $(ARGS)

list: setup
	$(BIN)/python -m admire list

# Soft-deletes the study's runs (restorable with MLflow); asks first unless ARGS=--yes.
delete: setup
	$(BIN)/python -m admire delete $(NAME) $(ARGS)

# Without MLflow's GenAI job runner (admire has no jobs for it), which would leave a store in
# /dev/shm each time the UI is started.
ui: setup
	@echo "a study's page: python -m admire status NAME prints its link (model-training view)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root ./mlruns/artifacts --host 127.0.0.1 --port 5000

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/proposal_time.py
	$(BIN)/python benchmarks/proxy_throughput.py
	$(BIN)/python benchmarks/workers_speedup.py

# The optimiser benchmark suite: every method on every problem, SEEDS seeds (admire bench --help).
SEEDS ?= 20
bench-opt: setup
	$(BIN)/python -m admire bench suite --seeds $(SEEDS) --out bench-results/suite $(ARGS)

# SIGKILL a replay study's driver at KILLS random points, resume it each time, check MLflow.
KILLS ?= 20
faults: setup
	$(BIN)/python scripts/faults.py --kills $(KILLS) $(ARGS)

lint: setup
	$(BIN)/ruff check admire tests benchmarks scripts examples
	$(BIN)/ruff format --check admire tests benchmarks scripts examples

clean-venv:
	rm -rf $(VENV)
