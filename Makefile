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
	$(PIP) install --quiet --no-deps tinysoundfont==0.3.7  # SoundFont synth for WAV; its pyaudio dependency is for live playback only
	touch $@

demo: venv
	mkdir -p demo
	$(VENV)/bin/cadenza compose --seed 7 --bars 16 -o demo/piece.mid

test: venv
	$(PY) -m pytest -q

bench: venv
	$(PY) benchmarks/attention.py

clean:
	rm -rf $(VENV) build *.egg-info
