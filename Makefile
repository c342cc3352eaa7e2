# visdet: every target creates or reuses .venv and installs the package first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The torch to install when the virtualenv has none. On a CPU-only machine with a local CPU
# wheel this pin takes it; an already installed torch is always kept.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# pytest worker processes of `make test` / `make test-full` (pytest-xdist); 0 runs in one
TEST_WORKERS ?= 2

.PHONY: install test test-full lint bench train clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Everything after torch goes in with uv when it is in the virtualenv or pip can put it there
# (one small wheel; the install then takes seconds instead of about two minutes), and with
# plain pip otherwise or when uv fails. UV=0 always uses pip. torch itself is always
# installed by pip, which honours this machine's pip configuration (local wheels, caps).
UV ?= 1
EXTRAS := .[dev,export,trackers]

$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	@if [ "$(UV)" = 1 ] && { [ -x $(VENV)/bin/uv ] || $(PIP) install -q uv >/dev/null 2>&1; }; then \
		echo "installing with uv: $(EXTRAS)"; \
		$(VENV)/bin/uv pip install --python $(PY) -e "$(EXTRAS)" \
			|| $(PIP) install -e "$(EXTRAS)"; \
	else \
		$(PIP) install -e "$(EXTRAS)"; \
	fi
	@# hydra-optuna-sweeper (older visdet; it pins optuna<3) must not shadow visdet's sweeper
	@$(PIP) uninstall -y -q hydra-optuna-sweeper 2>/dev/null || true
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS)

test-full: $(STAMP)
	$(PY) -m pytest -q -m "" -n $(TEST_WORKERS)

lint: $(STAMP)
	$(PY) -m ruff check visdet hydra_plugins tests experiments examples train.py setup.py
	$(PY) -m ruff format --check visdet hydra_plugins tests experiments examples train.py setup.py

# The core benchmark: nms, roi_align, Faster R-CNN R50-FPN against torchvision (overrides: ARGS=...).
bench: $(STAMP)
	$(PY) -m visdet bench preset=core $(ARGS)

# The main job: Faster R-CNN R18-FPN on the built-in shapes dataset (extra overrides: ARGS=...).
train: $(STAMP)
	$(VENV)/bin/visdet train $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
