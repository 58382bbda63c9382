# make demo: install and run the demo on built-in synthetic data (offline, a few minutes on 2 CPU cores)
# make test: install and run the whole test suite (what CI runs)
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install demo test test-fast

install:
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .

demo: install
	$(PYTHON) -m tfxai demo --output-dir demo_output

test: install
	$(PYTHON) -m pytest -q -ra

test-fast: install
	$(PYTHON) -m pytest -q -ra -m "not slow"
