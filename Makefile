VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: venv demo test bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	touch $@

demo: venv
	$(VENV)/bin/cadenza bench attention --quick

test: venv
	$(PY) -m pytest -q

bench: venv
	$(PY) benchmarks/attention.py

clean:
	rm -rf $(VENV) build *.egg-info
