# Everyday commands; each assumes the environment from the README's setup (.venv).
PY ?= .venv/bin/python

.PHONY: setup run test test-fast lint format bench

setup:
	python3 -m venv .venv && .venv/bin/pip install -e ".[dev]"

run:
	$(PY) -m modelops +recipe=lora_small

test:
	$(PY) -m pytest

test-fast:
	$(PY) -m pytest -m "not slow"

lint:
	$(PY) -m ruff check . && $(PY) -m ruff format --check . && .venv/bin/lint-imports

format:
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

bench:
	PYTHONPATH=. $(PY) benchmarks/bench_near_dedup.py
	PYTHONPATH=. $(PY) benchmarks/bench_sanitize.py
	PYTHONPATH=. $(PY) benchmarks/bench_dataset_memory.py
	PYTHONPATH=. $(PY) benchmarks/bench_evaluate.py
	PYTHONPATH=. $(PY) benchmarks/bench_metrics.py
	PYTHONPATH=. $(PY) benchmarks/bench_train.py
	PYTHONPATH=. $(PY) benchmarks/bench_tracking.py
	PYTHONPATH=. $(PY) benchmarks/bench_generate.py
	PYTHONPATH=. $(PY) benchmarks/bench_dpo.py
	PYTHONPATH=. $(PY) benchmarks/bench_gpu.py --tiny --full-vocab --steps 10 --shapes qwen2.5-0.5b
