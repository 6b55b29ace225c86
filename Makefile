# Two commands set everything up on a fresh machine (Python 3.11, registries only):
#   make demo   - create .venv, install, run the main job on the embedded default data
#   make test   - create .venv if needed, install, lint and format-check (ruff), run the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test install clean

install: $(STAMP)

# Every package is pinned in requirements.lock and installed with --no-deps, so pip never
# resolves torch (torch==2.13.0 is a local CPU wheel) nor torchvision/torchaudio.
$(STAMP): requirements.lock pyproject.toml
	@command -v espeak-ng >/dev/null || { echo "installing Debian package espeak-ng (speech for the embedded avdigits data)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq espeak-ng >/dev/null; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps --ignore-requires-python -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m lava_runtime.startup
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snnergy demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) build *.egg-info
