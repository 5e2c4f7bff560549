VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: venv browser postgres nginx demo test serve bench clean

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

# Debian packages some tests need, installed when missing and root; otherwise make says what
# to install (those tests then skip, or fail under CI=true). chromium: the real-browser tests
# (tests/test_listen_browser.py drives it with Playwright; Playwright's own browser download is
# never used). postgresql: the shared preference store's tests start a throwaway server from
# it. nginx: tests/test_proxy_nginx.py runs deploy/nginx.conf in front of two servers.
# $(call debian_package,PACKAGE,SHELL TEST THAT IT IS INSTALLED)
define debian_package
	@if $(2) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's $(1) for the tests (apt-get install -y $(1))"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
	else \
		echo "make: Debian's $(1) is missing: install it (sudo apt-get install $(1)) for its tests" >&2; \
	fi
endef

browser:
	$(call debian_package,chromium,test -x /usr/bin/chromium)

postgres:
	$(call debian_package,postgresql,ls /usr/lib/postgresql/*/bin/initdb)

nginx:
	$(call debian_package,nginx,test -x /usr/sbin/nginx)

demo: venv
	mkdir -p demo
	$(VENV)/bin/cadenza compose --seed 7 --bars 16 -o demo/piece.mid

test: venv browser postgres nginx
	$(PY) -m pytest -q

serve: venv
	$(VENV)/bin/cadenza serve

bench: venv
	$(PY) benchmarks/attention.py

clean:
	rm -rf $(VENV) build *.egg-info
