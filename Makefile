VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: venv browser demo test serve bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-deps tinysoundfont==0.3.7  # SoundFont synth for WAV; its pyaudio dependency is for live playback only
	@echo "building Cadenza's C++ attention and decode kernel into the user cache (once, about a minute)"
	$(PY) -c "from cadenza.attention import kernels; kernels.load()"  # no compiler: one warning, the PyTorch path runs
	touch $@

# Debian's chromium for the real-browser tests (tests/test_listen_browser.py drives it with
# Playwright; Playwright's own browser download is never used). Installed when missing and
# root; otherwise says what to install (those tests then skip, or fail under CI=true).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests (apt-get install -y chromium)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "make: /usr/bin/chromium is missing: install Debian's chromium (sudo apt-get install chromium) for the browser tests" >&2; \
	fi

demo: venv
	mkdir -p demo
	$(VENV)/bin/cadenza compose --seed 7 --bars 16 -o demo/piece.mid

test: venv browser
	$(PY) -m pytest -q

serve: venv
	$(VENV)/bin/cadenza serve

bench: venv
	$(PY) benchmarks/attention.py

clean:
	rm -rf $(VENV) build *.egg-info
