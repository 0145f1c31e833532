"""RLHF benchmark: what the key/value cache buys the rollouts, where a PPO step's time goes, and PPO steps/s.

1. Rollouts: 16 prompts answered with 96 sampled tokens each (no stop) by a randomly initialized model of each
   preset, with the cache (each new token costs one position; left padding told to the cache) and without it (the
   whole context recomputed for every token): sampled tokens/s, best of `--rounds`.
2. A PPO step: `ppo.train` for `--steps` optimizer steps on a policy, reference, value and reward model of the
   preset (character-level, random weights: the time does not depend on what they learned), 16 answers of up to
   96 tokens per rollout batch, 2 PPO epochs: the share of wall time spent generating, scoring (policy, value,
   reference and reward model forwards over the batch) and updating (from handing out a micro-batch to asking for
   the next: loss, backward, optimizer), and steps/s.

Run: `.venv/bin/python -m bench.rlhf [--presets tiny small] [--device cpu] [--steps 6] [--rounds 2]`; writes
bench/results/rlhf.json (bench/results/rlhf-cuda.json with --device cuda).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import string
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from corpusforge.runtime import write_json_atomic, write_text_atomic
from corpusforge.trainer import checkpoint, ppo, rollouts
from corpusforge.trainer.data import chat
from corpusforge.trainer.data.chars import char_tokenizer
from corpusforge.trainer.model import GPT, PRESETS, GPTConfig, ScalarGPT

ROOT = Path(__file__).resolve().parent.parent
CHARS = sorted(set(string.ascii_letters + string.digits + " .,;:!?'-\n"))
BATCH, NEW_TOKENS = 16, 96


def make_runs(folder: Path, preset: str) -> tuple[Path, Path, Path]:
    """(policy run, reward-model run, prompts file) of a preset's shape, random weights."""
    tokenizer = char_tokenizer(CHARS)
    config = GPTConfig(vocab_size=tokenizer.get_vocab_size(), **PRESETS[preset])
    torch.manual_seed(0)
    runs = []
    for name, cls in (("sft", GPT), ("rm", ScalarGPT)):
        run = folder / f"{preset}-{name}"
        run.mkdir(parents=True)
        checkpoint.save(checkpoint.path_in(run, "best"), cls(config), None,
                        {"model_config": dataclasses.asdict(config), "eot_id": 0, "step": 0})
        write_text_atomic(run / "tokenizer.json", tokenizer.to_str())
        write_text_atomic(run / "config.json", json.dumps({"train": {}, "model": dataclasses.asdict(config)}))
        runs.append(run)
    prompts = folder / "prompts.txt"
    prompts.write_text("".join(f"Tell me about the number {n} and the colour of the sky.\n" for n in range(200)))
    return runs[0], runs[1], prompts


def rollout_rate(policy: GPT, prompts: list[list[int]], use_cache: bool, device: str) -> float:
    """Sampled tokens/s of one batch (no stop token: every row samples NEW_TOKENS)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    seqs = rollouts.sample(policy, prompts, max_new_tokens=NEW_TOKENS, stops=(), pad_id=1,
                           generator=torch.Generator(device=device).manual_seed(0), use_cache=use_cache)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return int(seqs.lengths.sum()) / (time.perf_counter() - t0)


def ppo_step(policy: Path, rm: Path, prompts: Path, out: Path, steps: int, device: str, console) -> dict:
    """Time of `steps` PPO steps (no evaluation between them) and its split, from the run's own counters."""
    config = ppo.make_config(out, {"policy": str(policy), "reward": str(rm), "prompts": str(prompts),
                                   "batch_size": BATCH, "ppo_epochs": 2, "max_new_tokens": NEW_TOKENS,
                                   "max_steps": steps, "log_interval": steps, "eval_interval": 10**6,
                                   "checkpoint_interval": 10**6, "eval_prompts": 1, "samples": 0, "held_out": 0.05,
                                   "device": device, "peak_tflops": 1.0})
    stats = ppo.train(config, out, console=console)["stats"]
    # the last step's update is after the last batch was handed out: counted as the mean of the others
    update = stats["update_s"] * steps / (steps - 1)
    total = stats["generate_s"] + stats["score_s"] + update
    return {"steps": steps, "seconds": total, "steps_per_s": steps / total, "generate_s": stats["generate_s"],
            "score_s": stats["score_s"], "update_s": update,
            "split": {"generate": stats["generate_s"] / total, "score": stats["score_s"] / total,
                      "update": update / total}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=6, help="PPO steps timed per preset")
    parser.add_argument("--rounds", type=int, default=2, help="rollout timings per setting; the best is kept")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1, as `make rlhf`: the small matrices "
                                                                "of these presets run faster on one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(stderr=True, highlight=False)
    quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    results, table = {}, []
    where = f"{args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else
                                f" ({torch.get_num_threads()} threads)")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            policy_run, rm_run, prompts_file = make_runs(Path(tmp), preset)
            policy = ppo.load_gpt(policy_run).to(args.device)
            tokenizer = char_tokenizer(CHARS)
            tokenizer.encode_special_tokens = True
            lines = prompts_file.read_text().splitlines()[:BATCH]
            ids = [chat.render([{"role": "user", "content": f"{line[:10 + 3 * i]}"}], tokenizer,
                               for_generation=True)[0] for i, line in enumerate(lines)]
            rates = {}
            for use_cache in (True, False):
                rates[use_cache] = max(rollout_rate(policy, ids, use_cache, args.device) for _ in range(args.rounds))
            console.print(f"{preset}: rollout tokens/s {rates[True]:,.0f} with the cache, {rates[False]:,.0f} "
                          f"without ({rates[True] / rates[False]:.1f}x)")
            step = ppo_step(policy_run, rm_run, prompts_file, Path(tmp) / f"{preset}-ppo", args.steps, args.device,
                            quiet)
            console.print(f"{preset}: {step['steps_per_s']:.3f} PPO steps/s; generate {step['split']['generate']:.0%}"
                          f", score {step['split']['score']:.0%}, update {step['split']['update']:.0%}")
            results[preset] = {"rollout_tokens_per_s": {"cache": rates[True], "no_cache": rates[False]},
                               "ppo": step}
            table.append({"what": f"{preset} on {where}: rollout tokens/s, {BATCH} prompts x {NEW_TOKENS} tokens",
                          "result": f"KV cache {rates[True]:,.0f} tok/s",
                          "baseline": f"no cache {rates[False]:,.0f} tok/s",
                          "ratio": f"{rates[True] / rates[False]:.2f}"})
            table.append({"what": f"{preset} on {where}: PPO step ({BATCH} answers, 2 epochs): where time goes",
                          "result": f"{step['steps_per_s']:.3f} steps/s; generate {step['split']['generate']:.0%}, "
                                    f"score {step['split']['score']:.0%}, update {step['split']['update']:.0%}",
                          "baseline": "", "ratio": ""})
    name = "rlhf" if args.device == "cpu" else f"rlhf-{args.device.split(':')[0]}"
    write_json_atomic(ROOT / "bench" / "results" / f"{name}.json",
                      {"device": where, "batch": BATCH, "new_tokens": NEW_TOKENS, "load_average": os.getloadavg(),
                       "presets": results, "table": table})


if __name__ == "__main__":
    main()
