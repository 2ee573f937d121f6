# Two commands for a fresh clone:  `make demo` (the main job)  and  `make test` (the whole suite).
# Both create .venv if absent and install townlet into it, torch==2.13.0 first (a local CPU wheel here),
# so the torch range in pyproject.toml never pulls a multi-gigabyte CUDA build. `make test` first installs what the
# suite needs from the machine when it is missing (scripts/test-machine.sh: PostgreSQL, Chromium, chromedriver).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.townlet-installed

.PHONY: demo machine test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/townlet-telemetry train --episodes 30 --agents 8 --seed 0
	@echo "Open the demo run in a browser: $(BIN)/townlet-telemetry serve   (then http://127.0.0.1:8000)"
	@echo "Play its last episode in the terminal: $(BIN)/townlet-telemetry replay --episode 30 --play"

machine:  # what the suite needs beyond python3 and make; installed when missing (root or sudo), else one line
	sh scripts/test-machine.sh

test: machine $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -n 2

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_env.py
	$(BIN)/python benchmarks/bench_payload.py
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_store_pg.py
	$(BIN)/python benchmarks/bench_train_overhead.py
	$(BIN)/python benchmarks/bench_read.py
	$(BIN)/python benchmarks/bench_threads.py
	$(BIN)/python benchmarks/bench_serve.py
	$(BIN)/python benchmarks/bench_checkpoint.py
	$(BIN)/python benchmarks/bench_scale.py --skip-slow
	$(BIN)/python benchmarks/bench_recording.py
	$(BIN)/python benchmarks/bench_player.py
	$(BIN)/python benchmarks/bench_compare.py

clean:
	rm -rf $(VENV) build *.egg-info
