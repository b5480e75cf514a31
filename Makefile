# Set-up and everyday commands. Every target creates the virtual environment on first use.
VENV ?= .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt
RUN := runs/numbers-de

.PHONY: demo test test-slow check bench clean test-browser test-browser-serve

$(BIN)/python:
	python3 -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP_INSTALL) -e ".[dev]"
	touch $@

## demo: install, train on the built-in corpus, translate a few numbers, score the test split
demo: $(VENV)/.installed
	$(BIN)/seq2seq train recipes/numbers-de.yaml --out $(RUN)
	printf '7\n21\n1999\n40213\n870516\n' | $(BIN)/seq2seq translate --model $(RUN)/checkpoints/best.pt
	$(BIN)/seq2seq eval --model $(RUN)/checkpoints/best.pt \
		--src $(RUN)/data/corpus/test.src --ref $(RUN)/data/corpus/test.tgt

## test: install with the dev extra and run the default (fast) test suite
test: $(VENV)/.installed-dev
	$(BIN)/pytest -q

## test-slow: the slow tests (real corpora under ../shared/data, longer training)
test-slow: $(VENV)/.installed-dev
	$(BIN)/pytest -q -m slow

## test-browser: install Debian's chromium and chromedriver, then open the inspect page in it (selenium)
test-browser: $(VENV)/.installed-dev
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update && apt-get install -y chromium chromium-driver)
	$(PIP_INSTALL) -e ".[dev,browser]"
	$(BIN)/pytest -q -m browser tests/test_inspect_browser.py

## test-browser-serve: install Debian's chromium and selenium, then test the serve page in a headless browser
test-browser-serve: $(VENV)/.installed-dev
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update && apt-get install -y chromium chromium-driver)
	$(PIP_INSTALL) -e ".[dev,browser]"
	$(BIN)/pytest -q -m browser tests/test_serve_browser.py

## check: lint, format check and type check
check: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
