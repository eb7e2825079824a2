# Two commands on a fresh machine (Python 3.10+, make, git):
#   make demo   set up .venv and run the crash-and-resume demo notebook
#   make test   set up .venv (and Debian's chromium for the browser tests), run ruff, mypy
#               and every test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check resumable_nb tests scripts benchmarks
	$(VENV)/bin/mypy

test: lint
	bash .ci/install-browser
	$(PY) -m pytest -p no:cacheprovider

browser: $(STAMP)
	bash .ci/install-browser
	$(PY) -m pytest -p no:cacheprovider -m browser

unit: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -m "not kernel and not browser"

clean:
	rm -rf $(VENV) .resumable_nb notebooks/.resumable_nb
