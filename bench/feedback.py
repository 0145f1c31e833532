"""Feedback and reward-model benchmark: submit latency under concurrent labelers (the real server, scripted
labelers over HTTP), reward-model training throughput with all K-choose-2 pairs of a prompt in one batch element
against the pairs split apart, and held-out pairwise accuracy against the number of comparisons (plotted)."""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from corpusforge.feedback import labelers
from corpusforge.feedback.store import Store
from corpusforge.mix.tokenizer import load as load_tokenizer
from corpusforge.runtime import write_json_atomic
from corpusforge.trainer import checkpoint, reward
from corpusforge.trainer.data import chat, preferences
from corpusforge.trainer.model import GPTConfig, ScalarGPT

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from feedback_servers import serve, tiny_run  # noqa: E402  (the tests' tiny run and real server, reused)

RESULTS = ROOT / "bench" / "results"


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def submit_latency(root: Path, concurrent_labelers: int, per_labeler: int) -> dict:
    """p50/p99 of the submit request (not the sampling) with `concurrent_labelers` scripted labelers at once."""
    prompts = root / "prompts.txt"
    prompts.write_text("Tell me about cats.\nWhy is the sky blue?\nName a large river.\n")
    db = root / f"latency-{concurrent_labelers}.sqlite"
    with serve(root / "run", prompts, str(db), "--max-new-tokens", "8") as server:
        with concurrent.futures.ThreadPoolExecutor(concurrent_labelers) as pool:
            runs = list(pool.map(lambda i: labelers.label(server.url, rule="shorter", n=per_labeler,
                                                          labeler=f"bench{i}"), range(concurrent_labelers)))
    latencies = [s * 1000 for r in runs for s in r.latencies_s]
    stored = Store(db).counts()["comparisons"]
    assert stored == len(latencies) == concurrent_labelers * per_labeler, (stored, len(latencies))
    return {"labelers": concurrent_labelers, "submissions": len(latencies), "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99), "stored": stored}


def pairs_per_second(elements: list[preferences.Element], gpt_config: GPTConfig, pad_id: int, batch: int,
                     rounds: int = 3) -> float:
    """Training throughput in comparison pairs per second: forward, InstructGPT's loss, backward, AdamW step."""
    torch.manual_seed(0)
    net = ScalarGPT(gpt_config)
    optimizer = net.optimizer(1e-4, (0.9, 0.99), 0.1)
    batches = [reward.collate(elements[i:i + batch], pad_id) for i in range(0, len(elements), batch)]
    pairs = sum(len(e.pairs()) for e in elements)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for ids, last, element, rank, rating in batches:
            loss = reward.preference_loss(net(ids, last), element, rank, rating, 0.5)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        best = min(best, time.perf_counter() - t0)
    return pairs / best


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="corpusforge-bench-feedback-"))
    try:
        base = tiny_run(root / "run", n_embd=64, block_size=128)
        # 1. submit latency: 1 labeler against 8 at once
        one = submit_latency(root, 1, 40)
        eight = submit_latency(root, 8, 20)

        # 2. reward-model throughput: K answers as one element (K forward passes give K-choose-2 pairs) against
        # each pair as its own element (2 forward passes per pair), the same comparisons
        store = Store(root / "synthetic.sqlite")
        labelers.synthetic(store, 600, rule="shorter")
        tokenizer = load_tokenizer(base / "tokenizer.json")
        pad_id = chat.special_ids(tokenizer)[chat.PAD]
        feedback = preferences.read_feedback([str(root / "synthetic.sqlite")])
        together, _, _ = preferences.elements(feedback, tokenizer, 128, held_out=0.01, seed=0)
        together = together[:200]
        apart = [preferences.Element([el.sequences[i], el.sequences[j]], ranks=[0, 1])
                 for el in together for i, j in el.pairs()]
        gpt_config = GPTConfig(**checkpoint.read_meta(checkpoint.path_in(base, "best"))["model_config"])
        rate_together = pairs_per_second(together, gpt_config, pad_id, batch=8)
        rate_apart = pairs_per_second(apart, gpt_config, pad_id, batch=8 * 6)

        # 3. held-out accuracy against comparisons seen: one epoch (the default) over 600 scripted rankings
        run = reward.make_config(root / "rm", {"base": str(base), "feedback": [str(root / "synthetic.sqlite")],
                                               "device": "cpu", "eval_interval": 5, "lr": 1e-3, "min_lr": 1e-4,
                                               "held_out": 0.15, "peak_tflops": 1.0})
        summary = reward.train(run, root / "rm")
        curve = json.loads((root / "rm" / "accuracy.json").read_text())["curve"]
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "rm" / "accuracy.png", RESULTS / "reward_accuracy.png")
        reached = next((p["comparisons_seen"] for p in curve if p["accuracy"] >= 0.9), None)

        result = {
            "latency": {"one": one, "eight": eight},
            "reward_throughput": {"pairs_per_s_together": rate_together, "pairs_per_s_apart": rate_apart,
                                  "comparisons": len(together), "pairs": len(apart)},
            "accuracy_curve": curve, "reward_summary": {k: summary[k] for k in ("held_out_accuracy", "data")},
            "table": [
                {"what": "submit latency p50 / p99, 8 concurrent scripted labelers over HTTP (SQLite, WAL)",
                 "result": f"{eight['p50_ms']:.1f} / {eight['p99_ms']:.1f} ms ({eight['submissions']} submits, "
                           "each stored once)",
                 "baseline": f"1 labeler: {one['p50_ms']:.1f} / {one['p99_ms']:.1f} ms",
                 "ratio": f"{eight['p50_ms'] / one['p50_ms']:.2f}x p50"},
                {"what": "reward model training, comparison pairs/s (K=4: all 6 pairs of a prompt in one element)",
                 "result": f"{rate_together:,.0f}", "baseline": f"{rate_apart:,.0f} (each pair its own element)",
                 "ratio": f"{rate_together / rate_apart:.2f}x"},
                {"what": "reward model held-out pairwise accuracy vs comparisons seen (scripted rule 'shorter', "
                         "1 epoch; plot: bench/results/reward_accuracy.png)",
                 "result": f"{summary['held_out_accuracy']:.3f} after {curve[-1]['comparisons_seen']} comparisons",
                 "baseline": f"chance 0.5; {curve[0]['accuracy']:.3f} untrained",
                 "ratio": f">= 0.9 from {reached} comparisons" if reached is not None else "-"},
            ],
        }
        write_json_atomic(RESULTS / "feedback.json", result)
        for row in result["table"]:
            print(f"{row['what']}: {row['result']} (baseline {row['baseline']}, {row['ratio']})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
