# Quick start (see README.md):
#   make demo   # set up .venv and train the S2K estimator on the bundled sample images (CPU preset)
#   make test   # set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CONFIG ?= configs/motion.py:cpu
DEMO_WORKDIR ?= runs/motion_cpu
DEMO_STEPS ?= 300

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[tfds,dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) train.py --config $(DEMO_CONFIG) --workdir $(DEMO_WORKDIR) --config.train.num_steps=$(DEMO_STEPS)

test: setup
	$(PY) -m pytest -q -n 2 tests

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) runs *.egg-info
