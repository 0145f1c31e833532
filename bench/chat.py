"""Chat benchmark: generation with the key/value cache, and packing conversations into blocks.

1. Generation: tokens/s of greedy sampling with the key/value cache against recomputing the whole context for every
   token (what `generate` did before the cache), for the `tiny` and `small` presets on the CPU. Each case starts
   from a 16-token prompt and generates until the context is full (block_size - 16 new tokens), with the
   vocabulary of the sample recipe's tokenizer (8,192). Both ways must produce the same tokens; the rate is tokens
   per CPU second of this process on one thread (the machine is shared: wall time measures the other work), the
   best of a few rounds.
2. Packing: the share of padding in SFT blocks of the `tiny` and `small` block sizes on the real Self-Instruct seed
   tasks (175 conversations, ../shared/data/chat/), packed best fit against one conversation per padded block,
   with a byte-level BPE of 8,192 tokens trained on the tasks themselves (skipped when the data is absent).

Run: `.venv/bin/python -m bench.chat [--threads N] [--rounds N]`; writes bench/results/chat.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from bench.timing import best_rate
from corpusforge.trainer.data import chat
from corpusforge.trainer.model import GPT, PRESETS, preset

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "chat.json"
SEED_TASKS = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data")) / "chat" / \
    "self-instruct" / "seed_tasks.jsonl"
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
    with_cache = best_rate(lambda: net.generate(prompt, new, temperature=0), new, rounds, time.process_time)
    without = best_rate(lambda: net.generate(prompt, new, temperature=0, use_cache=False), new, max(1, rounds - 1),
                        time.process_time)
    return {"preset": name, "block_size": net.config.block_size, "new_tokens": new, "same_tokens": True,
            "cache_tokens_per_s": round(with_cache, 1), "recompute_tokens_per_s": round(without, 1),
            "speedup": round(with_cache / without, 2)}


def measure_packing() -> list[dict]:
    """Padding share with and without packing, per preset block size, on the Self-Instruct seed tasks."""
    from corpusforge.mix.tokenizer import new_bpe

    conversations = list(chat.read_conversations(SEED_TASKS))
    tokenizer, trainer = new_bpe(VOCAB, 2)
    tokenizer.train_from_iterator([m["content"] for c in conversations for m in c["messages"]], trainer=trainer)
    tokenizer.encode_special_tokens = True
    rendered = [chat.render(c["messages"], tokenizer) for c in conversations]
    cases = []
    for name in ("tiny", "small"):
        block = PRESETS[name]["block_size"]
        packed, padded = chat.PackStats(), chat.PackStats()
        for stats, per_block in ((packed, None), (padded, 1)):
            for _ in chat.pack(rendered, block, pad_id=1, stats=stats, max_per_block=per_block):
                pass
        cases.append({"preset": name, "block_size": block, "conversations": len(rendered),
                      "mean_tokens": round(sum(len(ids) for ids, _ in rendered) / len(rendered), 1),
                      "packed": vars(packed), "padded": vars(padded),
                      "padding_share_packed": round(packed.padding_share, 4),
                      "padding_share_padded": round(padded.padding_share, 4)})
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier when shared)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    packing = measure_packing() if SEED_TASKS.exists() else []
    cases = [measure(name, args.rounds) for name in ("tiny", "small")]
    table = [{"what": f"greedy generation, {c['preset']} preset (vocab {VOCAB:,}, {PROMPT}-token prompt + "
                      f"{c['new_tokens']} new, {args.threads} CPU thread), tokens per CPU second, same tokens",
              "result": f"KV cache {c['cache_tokens_per_s']:,.0f} tok/s",
              "baseline": f"recompute the context per token: {c['recompute_tokens_per_s']:,.0f} tok/s",
              "ratio": f"{c['speedup']}x"} for c in cases]
    table += [{"what": f"SFT blocks of {c['block_size']} + 1 tokens, Self-Instruct seed tasks ({c['conversations']} "
                       f"conversations, {c['mean_tokens']} tokens on average, BPE {VOCAB:,}): padding share",
               "result": f"packed: {c['padding_share_packed']:.1%} in {c['packed']['blocks']} blocks "
                         f"({c['packed']['truncated']} truncated to the block, {c['packed']['dropped']} of them "
                         f"left without an answer and dropped)",
               "baseline": f"one per block: {c['padding_share_padded']:.1%} in {c['padded']['blocks']} blocks",
               "ratio": f"{c['padded']['blocks'] / c['packed']['blocks']:.1f}x fewer blocks"} for c in packing]
    result = {"table": table, "cases": cases, "packing": packing, "threads": args.threads, "torch": torch.__version__,
              "machine": platform.processor() or platform.machine()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
