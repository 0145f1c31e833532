# corpusforge: `make corpus` builds the sample corpus, `make test` runs the suite.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RECIPE ?= pipelines/sample.toml

.PHONY: corpus test train sft rlhf bench venv clean

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
		--out build/sft-tiny --epochs 5 --set lr=1e-3 --set min_lr=1e-4

# RLHF on `make sft`'s model (made first when missing), from scratch in build/rlhf: a scripted labeler ranks K = 4
# answers per prompt through the feedback server's HTTP API (a real server on loopback), then a reward model,
# PPO-ptx, DPO and the comparison table (README: "RLHF").
# One thread by default: the tiny model's small matrices run faster on one thread than split over several (several
# times faster on a busy machine, measured).
RLHF := build/rlhf
RLHF_PORT ?= 8765
RLHF_THREADS ?= 1
CF := OMP_NUM_THREADS=$(RLHF_THREADS) $(VENV)/bin/corpusforge
rlhf: $(STAMP)
	test -f build/sft-tiny/best.safetensors || $(MAKE) sft
	rm -rf $(RLHF) && mkdir -p $(RLHF)
	$(PY) -c "from corpusforge.sample import chat; chat.write_prompts('$(RLHF)/prompts.jsonl', seed=2, count=400); \
		chat.write_prompts('$(RLHF)/eval-prompts.jsonl', seed=3, count=128)"
	$(CF) feedback serve build/sft-tiny --prompts $(RLHF)/prompts.jsonl --db $(RLHF)/feedback.sqlite --k 4 \
		--max-new-tokens 48 --port $(RLHF_PORT) > $(RLHF)/server.log 2>&1 & server=$$!; \
	trap "kill $$server" EXIT; \
	for i in $$(seq 120); do sleep 0.5; $(PY) -c "import requests; \
		requests.get('http://127.0.0.1:$(RLHF_PORT)/api/info', timeout=2).raise_for_status()" 2>/dev/null && break; done; \
	$(CF) feedback label http://127.0.0.1:$(RLHF_PORT) --rule polite --n 300 --labeler script:polite
	$(CF) train reward --base build/sft-tiny --feedback $(RLHF)/feedback.sqlite --out $(RLHF)/rm --set lr=3e-4 \
		--epochs 2
	$(CF) train ppo --policy build/sft-tiny --reward $(RLHF)/rm --prompts $(RLHF)/prompts.jsonl \
		--corpus build/sample/corpus --out $(RLHF)/ppo --config pipelines/rlhf-ppo.toml
	$(CF) train dpo --policy build/sft-tiny --feedback $(RLHF)/feedback.sqlite --out $(RLHF)/dpo \
		--config pipelines/rlhf-dpo.toml
	$(CF) eval compare build/sft-tiny $(RLHF)/ppo $(RLHF)/dpo --prompts $(RLHF)/eval-prompts.jsonl \
		--json $(RLHF)/compare.json

# the bench extra: datatrove, the peer bench/commoncrawl.py measures the CommonCrawl path against
bench: $(STAMP)
	$(PY) -m pip install -q -e ".[test,bench]"
	$(PY) -m bench.run_all

clean:
	rm -rf build
