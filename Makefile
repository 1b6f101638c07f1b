# One command per job; each creates or updates the virtual environment it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= out/demo
DEMO_IMAGES := --data fashion-mnist --num-images 4

FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: venv data demo test bench experiment clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,demo,onnx,trackers]"
	touch $(STAMP)

venv: $(STAMP)

# Fashion-MNIST from Debian's dataset-fashion-mnist (skipped when ATTMASK_DATA_DIR is set).
data:
	@if [ -z "$$ATTMASK_DATA_DIR" ] && [ ! -f $(FMNIST) ]; then \
		echo "installing Debian package dataset-fashion-mnist"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	fi

# Pretrain on Fashion-MNIST (CPU), report k-NN of the pretrained and the random-init backbone,
# draw attention and mask figures of Fashion-MNIST test images, write the run report. A fresh run every time.
demo: $(STAMP) data
	rm -rf $(DEMO_OUT)/run
	$(PY) -m attmask.cli.main pretrain --config configs/fashion_mnist_ibot_attmask_tiny.yaml --out $(DEMO_OUT)/run
	$(PY) -m attmask.cli.main visualize masks --checkpoint $(DEMO_OUT)/run $(DEMO_IMAGES) --out $(DEMO_OUT)/figures
	$(PY) -m attmask.cli.main visualize attention --checkpoint $(DEMO_OUT)/run $(DEMO_IMAGES) --out $(DEMO_OUT)/figures
	$(PY) -m attmask.cli.main report $(DEMO_OUT)/run

# Lint and format check (ruff, settings in pyproject.toml), then the test suite.
test: $(STAMP) data
	$(VENV)/bin/ruff check src tests benchmarks hubconf.py
	$(VENV)/bin/ruff format --check src tests benchmarks hubconf.py
	$(PY) -m pytest -q

# The masking ablation of AttMask on the CPU preset (about an hour on 2 cores; resumable).
experiment: $(STAMP) data
	$(PY) -m attmask.cli.main experiment masking --preset cpu --out results/masking_ablation

bench: $(STAMP)
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_step.py
	$(PY) benchmarks/bench_knn.py
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_cli.py
	$(PY) benchmarks/bench_compile.py  # train.compile on the demo preset, eager vs compiled, about 8 min
	$(PY) benchmarks/bench_memory.py  # DDP vs FSDP peak memory per process, ViT-S/B/L on 2 gloo processes
	$(PY) benchmarks/bench_cells.py  # one ablation cell on 1x2 vs 2x1 threads, about 10 min
	$(PY) benchmarks/bench_tta.py  # time to accuracy: about 80 min on 2 CPU cores

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
