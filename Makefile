# make demo: install and run the demo on built-in synthetic data (offline, a few minutes on 2 CPU cores)
# make test: install and run the whole test suite (what CI runs); as root it also installs Debian's
#            chromium and chromium-driver for the browser test of `tfxai serve` when they are missing
# make docs: build the reference (docs/, mkdocs.yml) into site/, offline; strict, so a broken link,
#            a missing anchor or a page left out of the nav fails it (tests/test_docs.py runs it too)
PYTHON ?= python3
PIP := $(PYTHON) -m pip
MEDIAPIPE_VENV := .venv-mediapipe
WEB_RUNTIME := web/node_modules/.package-lock.json

.PHONY: install browser demo test test-fast docs

install: $(MEDIAPIPE_VENV)/.installed $(WEB_RUNTIME)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .

# The in-browser runtime of `tfxai export --target web` (LiteRT.js): npm ci installs exactly the
# versions and integrity hashes of web/package-lock.json (no install scripts run); the export
# copies it into the app folder, so a phone never loads it from a CDN.
$(WEB_RUNTIME): web/package.json web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js 20 and npm, then run make install again"; exit 1; }
	cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

demo: install
	$(PYTHON) -m tfxai demo --output-dir demo_output

# The browser test drives the system Chromium; nothing downloads a browser. Without root the test
# skips, naming the packages (and fails under CI=true).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium and chromium-driver for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
	  echo "chromium and chromium-driver (Debian packages) are missing and this is not root: the browser test will skip"; \
	fi

test: install browser
	$(PYTHON) -m pytest -q -ra

test-fast: install browser
	$(PYTHON) -m pytest -q -ra -m "not slow"

docs:
	@$(PYTHON) -c "import mkdocs, mkdocstrings_handlers.python" 2>/dev/null || { echo "mkdocs and mkdocstrings are missing: run make install"; exit 1; }
	$(PYTHON) -m mkdocs build --strict --site-dir site

# MediaPipe (TFLite metadata writer + Tasks ImageClassifier, for `tfxai export --target android` and
# its tests) needs numpy < 2 and protobuf 4: a venv of its own, rebuilt only when its pins change.
$(MEDIAPIPE_VENV)/.installed: requirements-mediapipe.txt
	rm -rf $(MEDIAPIPE_VENV)
	$(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/python -m pip install -q --no-deps -r requirements-mediapipe.txt
	$(MEDIAPIPE_VENV)/bin/python -c "import mediapipe.tasks.python.vision, mediapipe.tasks.python.metadata.metadata_writers.metadata_writer"
	touch $@
