# Two commands for a newcomer: `make run` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# onnxruntime flavour: cpu (default) or gpu; never both in one environment.
ORT ?= cpu

.PHONY: setup run test lint typecheck bench train clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  echo "installing ffmpeg (decoder fallback for AAC/M4A and odd files)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq ffmpeg; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq ffmpeg; \
	  else echo "warning: ffmpeg missing and no root: M4A/AAC input will not decode"; fi; }
	@command -v mpd >/dev/null 2>&1 || { \
	  echo "installing mpd (the MPD player plugin's tests run a throwaway daemon)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq mpd; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq mpd; \
	  else echo "warning: mpd missing and no root: the MPD tests will fail"; fi; }
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing postgresql (the PostgreSQL tests run a throwaway server)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq postgresql; \
	  else echo "warning: postgresql missing and no root: the PostgreSQL tests will fail"; fi; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[$(ORT),train,dev,postgres]"
	# An editable install compiles none of the project's own modules; where bytecode is not
	# written at run time (PYTHONDONTWRITEBYTECODE, common in containers) every start would
	# compile them again: about 0.3 s of each `mer` command's cold start.
	$(PY) -m compileall -q mer_models bot train >/dev/null
	touch $(STAMP)

# The bot with MER_DISCORD_TOKEN set (env or .env); without it, the console on the demo library.
run: $(STAMP)
	$(VENV)/bin/mer db upgrade
	$(VENV)/bin/mer run

test: $(STAMP)
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check mer_models bot train tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/classify.py

train: $(STAMP)
	$(PY) -m train all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
