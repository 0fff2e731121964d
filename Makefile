# Two commands matter: `make demo` and `make test` (see README.md).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# torch 2.13.0 CPU is the wheel this kind of machine keeps on disk; on a GPU box pass e.g. TORCH=torch==2.14.1
TORCH ?= torch==2.13.0
REQS := requirements/engine.txt requirements/ui.txt requirements/test.txt requirements/constraints.txt

.PHONY: install browser demo test bench clean
install: $(VENV)/.installed

$(VENV)/.installed: $(REQS) pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -r requirements/engine.txt -r requirements/ui.txt -r requirements/test.txt -c requirements/constraints.txt
	# Only open_clip's bundled CLIP BPE vocabulary is used (tokenizers); its torchvision
	# requirement would pull a second, CUDA build of torch, so it is installed without deps.
	$(BIN)/pip install -q --no-deps open_clip_torch==3.3.0
	$(BIN)/pip install -q --no-deps -e .
	touch $@

demo: install
	$(BIN)/python -m lora_train demo

test: install browser
	$(BIN)/python -m pytest

# The browser tests drive Debian's chromium (Playwright cannot download a browser here): installed
# with apt-get when missing (as root, or through sudo), so `make test` runs the whole suite.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { if [ "$$(id -u)" = 0 ]; then S=; else S=sudo; fi; \
	  echo "Installing Debian's chromium for the browser tests"; \
	  $$S apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$S apt-get install -y -qq chromium >/dev/null; }

# Side by side with diffusers' example / kohya when LORA_BENCH_DIFFUSERS / LORA_BENCH_KOHYA name their
# checkouts (see benchmarks/tools.py); writes benchmarks/RESULTS.md. On a GPU: make bench BENCH_ARGS=--gpu
bench: install
	$(BIN)/python benchmarks/compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo_output .pytest_cache
