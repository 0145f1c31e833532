# corpusforge: `make corpus` builds the sample corpus, `make test` runs the suite.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RECIPE ?= pipelines/sample.toml

.PHONY: corpus test train sft bench venv clean

# torch is pinned to the CPU wheel on this machine's disk first; a loose spec would download CUDA builds.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || (echo "need $(PYTHON) (Python 3.11+)"; exit 1)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q "torch>=2.4"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

corpus: $(STAMP)
	$(VENV)/bin/corpusforge run $(RECIPE)

test: $(STAMP)
	$(PY) -m pytest -q

train: $(STAMP)
	$(VENV)/bin/corpusforge train pretrain --corpus build/sample/corpus --out build/train-tiny --preset tiny

# SFT on the sample's conversations (written by `make corpus`), from `make train`'s model.
sft: $(STAMP)
	$(VENV)/bin/corpusforge train sft --base build/train-tiny --data build/sample/inputs/chat/conversations.jsonl \
		--out build/sft-tiny --epochs 20

# the bench extra: datatrove, the peer bench/commoncrawl.py measures the CommonCrawl path against
bench: $(STAMP)
	$(PY) -m pip install -q -e ".[test,bench]"
	$(PY) -m bench.run_all

clean:
	rm -rf build
