# Two entry points: `make demo` (set up, then run the main job) and `make test` (set up, then
# run the whole test suite). Both build .venv with the pinned stack on first use. `make lint`
# checks formatting and lint rules (ruff, configured in pyproject.toml); `make format` fixes
# what ruff can fix by itself; `make gpu-setup` builds gsplat's CUDA extension on a GPU machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format gpu-setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# torch first, from the exact pins (a CUDA build that also runs on CPU)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	# SAM2's optional CUDA extension is skipped: it only speeds up mask post-processing
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(STAMP)

demo: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/cclgs demo

test: setup
	OMP_WAIT_POLICY=PASSIVE TORCHDYNAMO_DISABLE=1 TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# On a CUDA machine: build gsplat's CUDA extension once (cores, memory, GPU architecture and
# CUDA_HOME found by the script). Not for machines without a GPU, nor for CI.
gpu-setup: setup
	$(BIN)/python -m cclgs_gsplat.build_extension

clean:
	rm -rf $(VENV)
