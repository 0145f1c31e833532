"""Generation benchmark: tokens/s of greedy sampling with the key/value cache against recomputing the whole context
for every token (what `generate` did before the cache), for the `tiny` and `small` presets on the CPU.

Each case starts from a 16-token prompt and generates until the context is full (block_size - 16 new tokens), with
the vocabulary of the sample recipe's tokenizer (8,192). Both ways must produce the same tokens; the rate is the
best of a few rounds (the machine is shared, so the ratio measured in one run is what counts).

Run: `.venv/bin/python -m bench.generation [--threads N] [--rounds N]`; writes bench/results/generation.json.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from bench.timing import best_rate
from corpusforge.trainer.model import GPT, preset

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "generation.json"
VOCAB = 8192  # pipelines/sample.toml's tokenizer
PROMPT = 16


def measure(name: str, rounds: int) -> dict:
    """Tokens/s with and without the cache for one preset; refuses to report when the tokens differ."""
    torch.manual_seed(0)
    net = GPT(preset(name, VOCAB)).eval()
    prompt = torch.randint(0, VOCAB, (1, PROMPT))
    new = net.config.block_size - PROMPT
    cached = net.generate(prompt, new, temperature=0)
    recomputed = net.generate(prompt, new, temperature=0, use_cache=False)
    if not torch.equal(cached, recomputed):
        raise SystemExit(f"{name}: greedy tokens differ with and without the cache")
    with_cache = best_rate(lambda: net.generate(prompt, new, temperature=0), new, rounds)
    without = best_rate(lambda: net.generate(prompt, new, temperature=0, use_cache=False), new, max(1, rounds - 1))
    return {"preset": name, "block_size": net.config.block_size, "new_tokens": new, "same_tokens": True,
            "cache_tokens_per_s": round(with_cache, 1), "recompute_tokens_per_s": round(without, 1),
            "speedup": round(with_cache / without, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier when shared)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [measure(name, args.rounds) for name in ("tiny", "small")]
    table = [{"what": f"greedy generation, {c['preset']} preset (vocab {VOCAB:,}, {PROMPT}-token prompt + "
                      f"{c['new_tokens']} new, CPU {args.threads} thread), tokens/s, same tokens",
              "result": f"KV cache {c['cache_tokens_per_s']:,.0f} tok/s",
              "baseline": f"recompute the context per token: {c['recompute_tokens_per_s']:,.0f} tok/s",
              "ratio": f"{c['speedup']}x"} for c in cases]
    result = {"table": table, "cases": cases, "threads": args.threads, "torch": torch.__version__,
              "machine": platform.processor() or platform.machine()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
