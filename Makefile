# Quick start (see README.md):
#   make demo   # set up .venv and train the S2K estimator on the bundled sample images (CPU preset)
#   make test   # set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_CONFIG ?= configs/motion.py:cpu
DEMO_WORKDIR ?= runs/motion_cpu
DEMO_STEPS ?= 300

IMAGES ?=
OUT ?= results

.PHONY: setup demo sr test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[tfds,dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) train.py --config $(DEMO_CONFIG) --workdir $(DEMO_WORKDIR) --config.train.num_steps=$(DEMO_STEPS)

sr: setup
	@if [ -z "$(IMAGES)" ]; then echo 'usage: make sr IMAGES="a.jpg b.png" [OUT=results]  (super-resolves your photos with the shipped models)'; exit 2; fi
	$(VENV)/bin/s2k-sr $(IMAGES) --out $(OUT)

test: setup
	$(PY) -m pytest -q -n 2 --durations=15 tests   # the slowest tests listed: the suite should stay under ~10 min on 2 cores

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) runs *.egg-info
