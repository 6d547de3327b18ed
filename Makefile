# tiergate — the one entry point; mirrors CI. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never

BOOTSTRAP = scripts/bootstrap.sh
VENV_BIN = .venv/bin

.PHONY: help setup run test test-fast lint typecheck fmt schemas check-schemas settings-doc k8s-rules

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Install uv, Python deps and Debian packages (run by every other target)
	@$(BOOTSTRAP) >/dev/null

run: setup ## Start the whole mesh (cpu-llm + gateway) on 127.0.0.1:8080; Ctrl-C stops it
	@$(VENV_BIN)/python -m tiergate_runtime.mesh config/mesh.toml

test: setup lint typecheck check-schemas ## Everything CI checks: lint, types, schemas, all tests
	$(VENV_BIN)/pytest

# Tests that start a model process are marked `model` by tests/conftest.py (nobody marks them).
# 4 workers on 2 cores: many tests wait on sockets and timers (measured: 4 beat 2 and 6; README).
test-fast: setup lint typecheck ## Lint, types and every test that starts no model (4 workers, ~210 s)
	$(VENV_BIN)/pytest -n 4 --dist worksteal -m "not model"

lint: setup ## ruff lint and format check
	$(VENV_BIN)/ruff check .
	$(VENV_BIN)/ruff format --check .

typecheck: setup ## mypy --strict over every package and the tests
	$(VENV_BIN)/mypy
	$(VENV_BIN)/mypy tests
	$(VENV_BIN)/mypy tests_engines
	$(VENV_BIN)/mypy deploy/images/cpu_llm_bake.py deploy/observability/prometheusrule.py

fmt: setup ## Format and auto-fix
	$(VENV_BIN)/ruff format .
	$(VENV_BIN)/ruff check --fix .

schemas: setup ## Regenerate the committed JSON Schemas from the proto Structs
	$(VENV_BIN)/python -m tiergate_proto.schemas

check-schemas: setup ## Fail if the committed JSON Schemas are stale
	$(VENV_BIN)/python -m tiergate_proto.schemas --check

k8s-rules: setup ## Regenerate deploy/k8s/base/prometheusrules.yaml from deploy/observability/rules
	$(VENV_BIN)/python deploy/observability/prometheusrule.py

settings-doc: setup ## Regenerate docs/settings.md from the settings Structs and their docstrings
	$(VENV_BIN)/python -m tiergate_runtime.settings_doc

.PHONY: images
images: ## Build the five service images with one tag (Docker + BuildKit; TIERGATE_TAG, ARGS="--push")
	deploy/images/build.sh $(ARGS)

.PHONY: bench
bench: setup ## Benchmark the gateway vs direct, nginx and LiteLLM (ARGS="--quick" for a smoke run)
	@bench/setup.sh
	PYTHONPATH=bench $(VENV_BIN)/python -m tiergate_bench $(ARGS)

# Opt-in: real vLLM (CPU build, its own venv .venv-engines/) and llama.cpp under gpu-llm. Not
# part of `make test` (tests_engines/ is outside pyproject's testpaths). README: GPU section.
.PHONY: test-engines
test-engines: setup ## Real vLLM + llama.cpp under gpu-llm (own venv: ~90 s first setup; tests ~4 min)
	@scripts/engines-setup.sh >/dev/null
	$(VENV_BIN)/pytest tests_engines -p no:cacheprovider
