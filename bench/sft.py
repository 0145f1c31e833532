"""SFT benchmark: what masking and packing cost, and what fine-tuning changes. (What packing saves, the padding
share on the real Self-Instruct conversations with and without packing, is measured by bench/chat.py.)

1. Throughput: the same model (`tiny`, 4 layers × 128, block 256, batch 16) trained by `pretrain` (character level,
   on Python's reference documentation) and by `sft` (the sample's conversations, packed, document-masked attention,
   loss on assistant tokens only), alternating, best of two rounds: SFT tokens/s ÷ pretraining tokens/s.
2. Fine-tuning: from the pretrained model, SFT on the sample's conversations (`make sft`'s data, 10% held out):
   the held-out assistant-token loss before (step 0) and after (the best), and the share of held-out prompts whose
   greedy reply follows the format of its kind, before and after.

Run: `.venv/bin/python -m bench.sft [--base-steps 600] [--sft-steps 400] [--throughput-steps 30] [--rounds 2]`;
writes bench/results/sft.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from corpusforge.sample import chat as sample_chat
from corpusforge.trainer import pretrain, sft
from corpusforge.trainer.data import chat
from corpusforge.trainer.generate import load_model

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "bench" / "results" / "sft.json"

MODEL = dict(preset="tiny", block_size=256, dropout=0.0, batch_size=16, device="cpu", compile=False)
WINDOW = 10  # steps per log window; the first window of a run (start-up) is not counted
PROMPTS = 60


def reference_text(folder: Path) -> Path:
    """Python's reference documentation (shipped with CPython) as one text file: English prose with code."""
    from pydoc_data.topics import topics

    path = folder / "python-reference.txt"
    path.write_text("\n\n".join(topics[k] for k in sorted(topics)), encoding="utf-8")
    return path


def rate(run: Path) -> float:
    """Tokens/s over a run's log windows after the first."""
    train = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    windows = [r["tokens_per_s"] for r in train if r["kind"] == "train" and r["step"] > WINDOW]
    return len(windows) / sum(1 / w for w in windows)  # equal token windows: the harmonic mean is the overall rate


def greedy_followed(run: Path, prompts: list, which: str | None = None) -> float:
    """Share of `prompts` (messages, kind, suffix) whose greedy reply has the format of its kind."""
    net, _ = load_model(run, which=which)
    tokenizer = sft.load_tokenizer(run)
    end = chat.special_ids(tokenizer)[chat.END]
    followed = 0
    for messages, kind, suffix in prompts:
        ids, _ = chat.render(messages, tokenizer, for_generation=True)
        out = net.generate(torch.tensor([ids]), 150, temperature=0, stop_token=end)[0, len(ids):].tolist()
        followed += sample_chat.follows_format(kind, tokenizer.decode(out[:out.index(end)] if end in out else out),
                                               suffix)
    return followed / len(prompts)


def held_out_prompts(train_file: Path, count: int) -> list:
    seen = {m["content"] for line in train_file.read_text().splitlines() for m in json.loads(line)["messages"]
            if m["role"] == "user"}
    prompts = [(c["messages"][:-1], c["metadata"]["kinds"][-1], c["metadata"]["suffix"])
               for c in sample_chat.conversations(seed=99, count=count * 4)]
    return [p for p in prompts if p[0][-1]["content"] not in seen][:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-steps", type=int, default=600, help="pretraining steps of the base model")
    parser.add_argument("--sft-steps", type=int, default=400, help="SFT steps for the loss and format numbers")
    parser.add_argument("--throughput-steps", type=int, default=30, help="steps of each timed run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timed rounds; the best of each is kept")
    args = parser.parse_args()
    BASE_STEPS, SFT_STEPS = args.base_steps, args.sft_steps
    torch.set_num_threads(2)
    console = Console(stderr=True, highlight=False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text = reference_text(tmp)
        sample_chat.build(tmp, seed=1234)
        conversations = tmp / sample_chat.FILE

        console.rule("base model")
        base = tmp / "base"
        t0 = time.perf_counter()
        pretrain.train(pretrain.make_config(base, {"text": [str(text)], **MODEL, "max_steps": BASE_STEPS,
                                                   "eval_interval": BASE_STEPS, "checkpoint_interval": BASE_STEPS,
                                                   "log_interval": 50}), base, console=console)
        base_seconds = time.perf_counter() - t0

        console.rule("throughput: pretraining and SFT, alternating")
        timed = dict(max_steps=args.throughput_steps, warmup_steps=0, log_interval=WINDOW, eval_interval=10**6,
                     checkpoint_interval=10**6)
        rounds = {"pretrain": [], "sft": []}
        for r in range(args.rounds):
            run = tmp / f"pretrain-{r}"
            pretrain.train(pretrain.make_config(run, {"text": [str(text)], **MODEL, **timed, "eval_blocks": 1}), run,
                           console=console)
            rounds["pretrain"].append(rate(run))
            run = tmp / f"sft-{r}"
            sft.train(sft.make_config(run, {"base": str(base), "data": [str(conversations)], "batch_size": 16,
                                            "device": "cpu", "compile": False, **timed}), run, console=console)
            rounds["sft"].append(rate(run))

        console.rule("fine-tuning: held-out loss and format")
        run = tmp / "sft"
        t0 = time.perf_counter()
        summary = sft.train(sft.make_config(run, {"base": str(base), "data": [str(conversations)], "batch_size": 16,
                                                  "lr": 1e-3, "min_lr": 1e-4, "max_steps": SFT_STEPS,
                                                  "eval_interval": 50, "checkpoint_interval": SFT_STEPS,
                                                  "device": "cpu", "compile": False}), run, console=console)
        sft_seconds = time.perf_counter() - t0
        val = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        before = next(r["loss"]["chat"] for r in val if r["kind"] == "val" and r["step"] == 0)
        prompts = held_out_prompts(conversations, PROMPTS)
        # the base run has the chat tokens but was never shown a conversation: its replies are what SFT changes
        format_before, format_after = greedy_followed(base, prompts), greedy_followed(run, prompts)

    result = {
        "model": {**MODEL, "parameters": summary["parameters"], "vocab": summary["vocab_size"]},
        "throughput": {"pretrain_tokens_per_s": max(rounds["pretrain"]), "sft_tokens_per_s": max(rounds["sft"]),
                       "ratio": max(rounds["sft"]) / max(rounds["pretrain"]), "rounds": rounds},
        "throughput_steps": args.throughput_steps,
        "fine_tuning": {"base_steps": BASE_STEPS, "base_seconds": base_seconds, "sft_steps": SFT_STEPS,
                        "sft_seconds": sft_seconds, "data": summary["data"],
                        "held_out_loss_before": before, "held_out_loss_after": summary["best_val_loss"],
                        "best_step": summary["best_step"], "prompts": len(prompts),
                        "format_followed_before": format_before, "format_followed_after": format_after},
    }
    result["table"] = [
        {"what": "SFT vs pretraining, same model (tiny, block 256, batch 16, CPU): tokens/s",
         "result": f"SFT {result['throughput']['sft_tokens_per_s']:,.0f} tok/s (packed, document-masked)",
         "baseline": f"pretraining {result['throughput']['pretrain_tokens_per_s']:,.0f} tok/s",
         "ratio": f"{result['throughput']['ratio']:.2f}"},
        {"what": f"SFT on the sample conversations ({SFT_STEPS} steps): held-out assistant-token loss; greedy "
                 f"replies in the format ({len(prompts)} held-out prompts)",
         "result": f"after {summary['best_val_loss']:.3f} nats; {format_after:.0%} in format",
         "baseline": f"before {before:.3f} nats; {format_before:.0%} in format",
         "ratio": f"{summary['best_val_loss'] / before:.2f}"},
    ]
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    for row in result["table"]:
        console.print(f"{row['what']}: {row['result']} vs {row['baseline']} (ratio {row['ratio']})")


if __name__ == "__main__":
    main()
