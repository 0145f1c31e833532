"""Trainer benchmark: nanoGPT's CPU anchor, then tokens/s and MFU of the trainer against a plain training loop.

1. Anchor: nanoGPT's CPU recipe for character-level tiny-shakespeare (4 layers, 4 heads, 128 wide, block 64,
   batch 12, 2000 iterations, lr 1e-3 -> 1e-4, warmup 100, beta2 0.99, dropout 0), which reaches a validation loss
   of about 1.88 in about 3 minutes on a laptop CPU. Run through `corpusforge.trainer.pretrain` with the
   character-level reader; it must reach <= 1.90.
2. Throughput: for the `tiny` and `gpt2-124m` presets, the trainer's tokens/s and model FLOPs utilization against a
   plain loop (random batches from a tensor, forward, backward, clip, AdamW step) training the same model in the
   same process, alternating, best of a few rounds (the machine is shared, so only the ratio is meaningful).
3. With `--device cuda`: the same throughput comparison on the GPU (bf16 autocast and torch.compile for both
   loops), and nanoGPT's GPU anchor instead of the CPU one: the `small` preset is nanoGPT's shakespeare-char GPU
   run (6 layers, 6 heads, 384 wide, block 256, batch 64, dropout 0.2, 5000 iterations), whose best validation
   loss nanoGPT reports as 1.4697 in about 3 minutes on an A100.

Run: `.venv/bin/python -m bench.trainer [--device cpu|cuda] [--skip-anchor] [--anchor-seeds 1337 1338 ...]`;
writes bench/results/trainer.json (cpu) or bench/results/trainer-cuda.json (cuda); with --skip-anchor, the anchor
results of the previous run are kept. `bench/device_check.sh` runs the CUDA half and the trainer's tests on a GPU
machine. Needs tiny-shakespeare at ../shared/data/books/tinyshakespeare/input.txt (or CORPUSFORGE_SHARED_DATA).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from corpusforge.trainer import devices, pretrain
from corpusforge.trainer import model as model_mod
from corpusforge.trainer.data.chars import TextBlocks

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
SHAKESPEARE = SHARED / "books" / "tinyshakespeare" / "input.txt"
RESULTS = {"cpu": ROOT / "bench" / "results" / "trainer.json", "cuda": ROOT / "bench" / "results" / "trainer-cuda.json"}

# nanoGPT: python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
#   --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
#   --lr_decay_iters=2000 --dropout=0.0
ANCHOR = dict(preset="tiny", n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, batch_size=12,
              grad_accum=1, max_steps=2000, lr=1e-3, min_lr=1e-4, warmup_steps=100, beta1=0.9, beta2=0.99,
              weight_decay=0.1, grad_clip=1.0, eval_interval=250, checkpoint_interval=2000, eval_blocks=960,
              log_interval=100, device="cpu", compile=False)
# nanoGPT: python train.py config/train_shakespeare_char.py (its GPU defaults: the `small` preset's)
GPU_ANCHOR = dict(preset="small", max_steps=5000, warmup_steps=100, eval_interval=250, checkpoint_interval=5000,
                  eval_blocks=4096, log_interval=100, device="cuda")
# (settings, nanoGPT's validation loss, the bar ours must reach, what the baseline is)
ANCHORS = {"cpu": (ANCHOR, 1.88, 1.90, "nanoGPT: ~3 min on a laptop CPU", 180.0),
           "cuda": (GPU_ANCHOR, 1.4697, 1.50, "nanoGPT: ~3 min on an A100", 180.0)}


def run_anchor(console: Console, seed: int, device: str) -> dict:
    settings = ANCHORS[device][0]
    required = ANCHORS[device][2]
    with tempfile.TemporaryDirectory() as tmp:
        config = pretrain.make_config(tmp, {"text": [str(SHAKESPEARE)], **settings, "seed": seed})
        t0 = time.perf_counter()
        summary = pretrain.train(config, tmp, console=console)
        wall = time.perf_counter() - t0
        curve = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    # nanoGPT's GPU run reports its best validation loss; its CPU recipe, the final one
    val = summary["best_val_loss"] if device == "cuda" else summary["val_loss"]["text"]
    return {"config": settings, "seed": seed, "val_loss": val, "best_val_loss": summary["best_val_loss"],
            "passed": val <= required, "wall_seconds": wall,
            "train_seconds": summary["train_seconds"], "tokens_per_s": summary["tokens_per_s"],
            "mfu": summary["mfu"], "val_curve": [(r["step"], r["loss"]["text"]) for r in curve if r["kind"] == "val"]}


@dataclasses.dataclass
class Case:
    """One throughput measurement: a preset on a device, `warmup` steps not timed, then `measured` steps."""

    preset: str
    device: str
    batch_size: int
    warmup: int
    measured: int
    vocab_size: int | None = None  # GPT-2's padded 50304 for gpt2-124m, so the FLOPs are GPT-2's
    rounds: int = 3  # alternating trainer / plain-loop rounds; the best of each is kept

    peak_tflops: float | None = None  # one peak for both loops, so their MFUs compare

    def settings(self) -> dict:
        return dict(preset=self.preset, batch_size=self.batch_size, grad_accum=1, vocab_size=self.vocab_size,
                    device=self.device, dropout=0.0, warmup_steps=0, max_steps=self.warmup + self.measured,
                    log_interval=self.warmup, eval_interval=10**9, checkpoint_interval=10**9, eval_blocks=1,
                    peak_tflops=self.peak_tflops)


def trainer_rate(case: Case, console: Console) -> tuple[float, dict]:
    """Tokens/s of `pretrain.train` over its measured steps (its own log windows after the warmup one)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = pretrain.make_config(tmp, {"text": [str(SHAKESPEARE)], **case.settings()})
        summary = pretrain.train(config, tmp, console=console)
        records = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    window_tokens = case.warmup * case.batch_size * config.block_length()  # a log window is `warmup` steps
    seconds = [window_tokens / r["tokens_per_s"] for r in records if r["kind"] == "train" and r["step"] > case.warmup]
    return len(seconds) * window_tokens / sum(seconds), summary


def reference_rate(case: Case) -> float:
    """Tokens/s of a plain loop over the same model, optimizer, precision and compile setting."""
    config = pretrain.make_config(tempfile.gettempdir(), {"text": [str(SHAKESPEARE)], **case.settings()})
    reader = TextBlocks(config.text, config.block_length())
    data = reader.data
    device = torch.device(case.device)
    gpt = model_mod.preset(config.preset, config.vocab_size or reader.vocab_size, dropout=0.0)
    torch.manual_seed(config.seed)
    net = model_mod.GPT(gpt).to(device)
    optimizer = net.optimizer(config.lr, (config.beta1, config.beta2), config.weight_decay,
                              fused=device.type == "cuda")
    model = torch.compile(net) if device.type == "cuda" else net
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    rng = np.random.default_rng(0)
    T = gpt.block_size
    t0 = 0.0
    for step in range(case.warmup + case.measured):
        if step == case.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        starts = rng.integers(0, len(data) - T - 1, case.batch_size)
        batch = torch.from_numpy(np.stack([data[i:i + T + 1] for i in starts])).to(device)
        with amp:
            _, loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()  # waits for the device
    return case.measured * case.batch_size * T / (time.perf_counter() - t0)


def peak(device: str) -> tuple[float, str]:
    """The peak FLOP/s MFU is measured against: a GPU's datasheet bf16 number when known, else the best matmul
    rate measured now (on a shared CPU, several measurements are taken during the run and the best kept)."""
    if device == "cuda":
        return devices.peak_flops(torch.device("cuda"), torch.bfloat16)
    return devices.measure_matmul_flops(device, torch.float32, bursts=20), "measured float32 matmul on cpu"


def run_throughput(cases: list[Case], console: Console) -> list[dict]:
    out = []
    best_cpu_peak = 0.0
    for case in cases:
        flops_peak, source = peak(case.device)
        if case.device == "cpu":
            best_cpu_peak = flops_peak = max(best_cpu_peak, flops_peak)
        case.peak_tflops = flops_peak / 1e12
        ours, plain, summary = [], [], {}
        for _ in range(case.rounds):
            plain.append(reference_rate(case))
            rate, summary = trainer_rate(case, console)
            ours.append(rate)
        flops, peak_flops = summary["flops_per_token"], flops_peak
        row = {"preset": case.preset, "device": case.device, "dtype": summary["dtype"], "vocab": summary["vocab_size"],
               "parameters": summary["parameters"], "batch": case.batch_size,
               "block": model_mod.PRESETS[case.preset]["block_size"], "flops_per_token": flops,
               "peak_flops": peak_flops, "peak_source": source,
               "trainer_tokens_per_s": max(ours), "reference_tokens_per_s": max(plain),
               "trainer_mfu": flops * max(ours) / peak_flops, "reference_mfu": flops * max(plain) / peak_flops,
               "rounds": {"trainer": ours, "reference": plain}}
        row["ratio"] = row["trainer_tokens_per_s"] / row["reference_tokens_per_s"]
        console.print(f"{case.preset} on {case.device}: trainer {row['trainer_tokens_per_s']:,.0f} tok/s "
                      f"(MFU {row['trainer_mfu']:.1%}), plain loop {row['reference_tokens_per_s']:,.0f} tok/s "
                      f"(MFU {row['reference_mfu']:.1%}), ratio {row['ratio']:.3f}")
        out.append(row)
    return out


def table(anchors: list[dict], throughput: list[dict], device: str) -> list[dict]:
    rows = []
    if anchors:
        anchor = anchors[0]
        _, nanogpt, required, baseline_time, nanogpt_seconds = ANCHORS[device]
        shape = ("char tiny-shakespeare, 4×128, block 64, batch 12, 2000 steps" if device == "cpu" else
                 "char tiny-shakespeare, small preset 6×384, block 256, batch 64, 5000 steps")
        where = "2 shared cores" if device == "cpu" else torch.cuda.get_device_name()
        others = "; other seeds " + ", ".join(f"{a['val_loss']:.3f}" for a in anchors[1:]) if anchors[1:] else ""
        rows.append({"what": f"nanoGPT {device.upper()} anchor: {shape}: val loss",
                     "result": f"{anchor['val_loss']:.3f} (must be <= {required}){others}",
                     "baseline": f"nanoGPT {nanogpt}", "ratio": f"{anchor['val_loss'] / nanogpt:.3f}"})
        rows.append({"what": f"nanoGPT {device.upper()} anchor: wall time, tokens/s ({where})",
                     "result": f"{anchor['wall_seconds'] / 60:.1f} min, {anchor['tokens_per_s']:,.0f} tok/s, "
                               f"MFU {anchor['mfu']:.1%}",
                     "baseline": baseline_time, "ratio": f"{anchor['wall_seconds'] / nanogpt_seconds:.2f}"})
    for r in throughput:
        rows.append({"what": f"{r['preset']} on {r['device']} ({r['dtype']}, vocab {r['vocab']:,}, batch "
                             f"{r['batch']}×{r['block']}): tokens/s, MFU",
                     "result": f"trainer {r['trainer_tokens_per_s']:,.0f} tok/s, MFU {r['trainer_mfu']:.1%}",
                     "baseline": f"plain loop {r['reference_tokens_per_s']:,.0f} tok/s, MFU {r['reference_mfu']:.1%}",
                     "ratio": f"{r['ratio']:.3f}"})
    return rows


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--skip-anchor", action="store_true", help="only the throughput comparison")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--anchor-seeds", type=int, nargs="+", default=[1337],
                        help="run the anchor once per seed (the first is the headline; the rest show the spread)")
    args = parser.parse_args()
    if not SHAKESPEARE.exists():
        raise SystemExit(f"tiny-shakespeare not found at {SHAKESPEARE} (set CORPUSFORGE_SHARED_DATA)")
    torch.set_num_threads(args.threads)
    console = Console(stderr=True, highlight=False)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    if args.device == "cpu":
        cases = [Case("tiny", "cpu", batch_size=16, warmup=10, measured=40),
                 Case("gpt2-124m", "cpu", batch_size=1, warmup=1, measured=3, vocab_size=50304, rounds=2)]
    else:
        cases = [Case("tiny", "cuda", batch_size=256, warmup=20, measured=100),
                 Case("gpt2-124m", "cuda", batch_size=16, warmup=10, measured=30, vocab_size=50304)]
    throughput = run_throughput(cases, console)
    anchors = []
    results = RESULTS[args.device]
    for seed in [] if args.skip_anchor else args.anchor_seeds:
        console.rule(f"nanoGPT {args.device.upper()} anchor (seed {seed})")
        anchors.append(run_anchor(console, seed, args.device))
    if not anchors and results.exists():  # keep the last measured anchor
        anchors = json.loads(results.read_text()).get("anchors", [])
    result = {"table": table(anchors, throughput, args.device), "anchors": anchors, "throughput": throughput,
              "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                          "torch_threads": args.threads, "torch": torch.__version__,
                          "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}}
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    for row in result["table"]:
        console.print(f"{row['what']}: {row['result']} vs {row['baseline']} (ratio {row['ratio']})")


if __name__ == "__main__":
    main()
