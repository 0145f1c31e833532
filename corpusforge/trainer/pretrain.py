"""Pretraining: the loop that turns a weighted corpus into a GPT.

`train(config, out_dir)` reads token blocks through the corpus's weighted reader (`corpusforge.shards`; the trainer
never mixes sources itself) or, for character-level runs, through `chars.TextBlocks`, and trains with AdamW, linear
warmup then cosine decay, gradient clipping and accumulation. On CUDA it uses bf16 autocast and `torch.compile`;
elsewhere it runs in float32 on the CPU. Started by `torchrun`, it trains data-parallel (DDP): each rank reads its
own disjoint part of the stream, and `grad_accum` counts micro-batches over all ranks, so the global batch (and the
result) does not depend on the number of processes.

What a run leaves in `out_dir`: `checkpoint.safetensors` (see `checkpoint`; what `--resume` continues),
`best.safetensors` (the weights at the lowest mean validation loss so far), `tokenizer.json`, `config.json`,
`metrics.jsonl` (train loss, tokens/s and MFU every `log_interval` steps; validation loss per source every
`eval_interval` steps), `loss.png` and `_summary.json`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import math
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from corpusforge.errors import UserError
from corpusforge.runtime import atomic_path, write_json_atomic, write_text_atomic
from corpusforge.trainer import checkpoint
from corpusforge.trainer import model as model_mod


class TrainError(UserError, RuntimeError):
    """A run cannot start or continue as asked; the message says why and what to do."""


@dataclasses.dataclass
class TrainConfig:
    """`corpusforge train pretrain` settings. Give `corpus` (a mixed corpus folder) or `text` (plain text files,
    character level). Model shape fields left at None take the preset's value (`model.PRESETS`); the other
    defaults are the `tiny` preset's, and `TRAINING_PRESETS` changes them for the larger presets."""

    corpus: str = ""
    text: list[str] = dataclasses.field(default_factory=list)
    sets: list[str] | None = None  # train on these sets of the corpus only (weights renormalized)
    preset: str = "tiny"
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    dropout: float | None = None
    vocab_size: int | None = None  # default: the tokenizer's; set it higher to pad the embedding for speed
    batch_size: int = 16  # blocks per micro-batch on each rank
    grad_accum: int = 1  # micro-batches per optimizer step over all ranks (a multiple of the number of ranks)
    max_steps: int = 600
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 turns clipping off
    eval_interval: int = 100
    eval_blocks: int = 96  # validation blocks per source
    log_interval: int = 10
    checkpoint_interval: int = 100
    seed: int = 1337
    device: str = "auto"  # auto: cuda when present, else cpu
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 autocast on CUDA, float32 on CPU
    compile: bool | None = None  # torch.compile; None: on CUDA only
    peak_tflops: float | None = None  # per device, for MFU; default: datasheet for known GPUs, else measured

    def validate(self) -> None:
        if bool(self.corpus) == bool(self.text):
            raise ValueError("give exactly one of corpus (a mixed corpus folder) or text (plain text files)")
        if self.preset not in model_mod.PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r}; known: {', '.join(model_mod.PRESETS)}")
        for name in ("batch_size", "grad_accum", "max_steps", "eval_interval", "eval_blocks", "log_interval",
                     "checkpoint_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"min_lr: must be in (0, lr={self.lr}], got {self.min_lr}")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError(f"warmup_steps: must be in [0, max_steps={self.max_steps}), got {self.warmup_steps}")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda", "mps")):
            raise ValueError(f"device: 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    def block_length(self) -> int:
        return self.block_size or model_mod.PRESETS[self.preset]["block_size"]


# Training settings per preset, over TrainConfig's defaults (model shapes are model.PRESETS). tiny: the defaults,
# sized to train in minutes on a 2-core CPU; small: nanoGPT's shakespeare-char GPU run; gpt2-124m: nanoGPT's GPT-2
# reproduction (~0.5M tokens per step).
TRAINING_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "small": dict(batch_size=64, max_steps=5000, lr=1e-3, min_lr=1e-4, warmup_steps=100, beta2=0.99, dropout=0.2,
                  eval_interval=250, checkpoint_interval=250, eval_blocks=256),
    "gpt2-124m": dict(batch_size=12, grad_accum=40, max_steps=600_000, lr=6e-4, min_lr=6e-5, warmup_steps=2000,
                      beta2=0.95, eval_interval=1000, checkpoint_interval=1000, eval_blocks=480),
}

# Settings a resumed run may change: they steer the run, not what it computes (max_steps stretches the schedule).
RESUMABLE = {"max_steps", "log_interval", "eval_interval", "eval_blocks", "checkpoint_interval", "device", "compile",
             "peak_tflops"}


def make_config(out_dir: str | os.PathLike, values: dict[str, Any], *, resume: bool = False) -> TrainConfig:
    """The config of a run: the preset's training defaults (`values["preset"]`, else tiny) or, when resuming a run
    with a checkpoint, that run's config; then `values` on top. Raises recipe.RecipeError naming a bad key."""
    from corpusforge import recipe

    path = checkpoint.path_in(out_dir)
    if resume and path.exists():
        base = checkpoint.read_meta(path)["train_config"]
    else:
        base = TRAINING_PRESETS.get(values.get("preset", TrainConfig.preset), {})  # unknown: validate() says so
    return recipe.from_dict(TrainConfig, {**base, **values}, "train pretrain")


def open_reader(config: TrainConfig, split: str, *, rank: int = 0, world_size: int = 1,
                sets: list[str] | None = None):
    """The block stream the config names: the corpus's weighted reader, or character-level text."""
    from corpusforge import shards
    from corpusforge.trainer.chars import TextBlocks

    try:
        if config.text:
            return TextBlocks(config.text, config.block_length(), split=split, seed=config.seed, rank=rank,
                              world_size=world_size, sets=sets)
        return shards.WeightedReader(config.corpus, config.block_length(), split=split, seed=config.seed, rank=rank,
                                     world_size=world_size, sets=sets)
    except (OSError, ValueError) as err:  # no manifest, a bad set name, a missing text file
        raise TrainError(f"cannot read the {split} split of {config.corpus or config.text}: {err}") from None


def open_tokenizer(config: TrainConfig, reader):
    """The tokenizer the blocks were encoded with (saved beside the checkpoint for `generate`)."""
    if config.text:
        return reader.tokenizer
    from corpusforge import shards

    return shards.load_tokenizer(config.corpus)


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then cosine decay to min_lr at max_steps."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / (config.warmup_steps + 1)
    if step >= config.max_steps:
        return config.min_lr
    ratio = (step - config.warmup_steps) / (config.max_steps - config.warmup_steps)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (config.lr - config.min_lr)


# ------------------------------------------------------------------------------------------------ devices, MFU
# Dense bf16 tensor-core peaks from the vendors' datasheets (SXM parts), FLOP/s.
_GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}



def peak_flops(device: torch.device, dtype: torch.dtype, override_tflops: float | None = None) -> tuple[float, str]:
    """(FLOP/s one device can do, where that number comes from) for MFU: the override, a known GPU's datasheet bf16
    peak, or else a measured large-matmul rate in `dtype` (a CPU has no single datasheet number)."""
    if override_tflops:
        return override_tflops * 1e12, "given"
    if device.type == "cuda" and dtype == torch.bfloat16:
        name = torch.cuda.get_device_name(device)
        for key, flops in _GPU_PEAK_BF16.items():
            if key in name:
                return flops, f"{name} datasheet"
    return _measured_peak(str(device), dtype), f"measured {dtype_name(dtype)} matmul on {device.type}"


@functools.cache
def _measured_peak(device: str, dtype: torch.dtype) -> float:
    return measure_matmul_flops(device, dtype)


def measure_matmul_flops(device: str, dtype: torch.dtype, bursts: int = 8, seconds: float = 0.1) -> float:
    """FLOP/s of a large square matmul: the best of `bursts` timed bursts (the rate the hardware reaches, not a
    moment when other work had the cores)."""
    n = 4096 if device.startswith("cuda") else 1024
    a = b = torch.full((n, n), 0.5, device=device, dtype=dtype)  # not randn: that would move the training RNG
    best = 0.0
    for _ in range(bursts):
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            reps += 1
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclasses.dataclass
class Distributed:
    """This process's place in a (possibly single-process) data-parallel run."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op.upper()))
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


@contextlib.contextmanager
def distributed(device: str = "auto"):
    """Join the process group `torchrun` describes in the environment (NCCL on CUDA, gloo on CPU), or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if world_size == 1:
        yield Distributed(device=torch.device("cuda" if cuda and device == "auto" else
                                              ("cpu" if device == "auto" else device)))
        return
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(), device=dev)
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------------------------------------- data
class BlockBatches:
    """Batches of `batch_size` blocks from a reader, read one batch ahead in a thread (so reading overlaps the
    step), each with the reader position after it: a checkpoint stores the position of the last batch trained on,
    not of the batch read ahead."""

    def __init__(self, reader, batch_size: int, device: torch.device, depth: int = 2):
        self._reader, self._batch_size, self._device = reader, batch_size, device
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="corpusforge-batches", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            blocks = iter(self._reader)
            while not self._stop.is_set():
                batch = torch.from_numpy(np.stack([next(blocks) for _ in range(self._batch_size)]).astype(np.int64))
                if self._device.type == "cuda":
                    batch = batch.pin_memory()
                self._put((batch, copy.deepcopy(self._reader.state_dict())))
        except BaseException as err:  # the trainer re-raises it in the main thread
            self._put(err)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(inputs, targets, reader state after this batch); inputs and targets are (batch_size, block_size)."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        batch, state = item
        batch = batch.to(self._device, non_blocking=True)
        return batch[:, :-1], batch[:, 1:], state

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def validation_blocks(config: TrainConfig, sets: list[str], dist: Distributed) -> dict[str, torch.Tensor]:
    """For each source, this rank's share of the first `eval_blocks` blocks of its held-out stream (the same
    blocks at every evaluation, so the curve shows the model changing, not the sample)."""
    out = {}
    for name in sets:
        reader = open_reader(config, "val", rank=dist.rank, world_size=dist.world_size, sets=[name])
        count = len(range(dist.rank, config.eval_blocks, dist.world_size))
        blocks = iter(reader)
        rows = [next(blocks) for _ in range(count)]  # none when there are more ranks than eval_blocks
        out[name] = torch.from_numpy(np.stack(rows).astype(np.int64) if rows else
                                     np.empty((0, config.block_length() + 1), dtype=np.int64))
    return out


@torch.no_grad()
def evaluate(net: model_mod.GPT, blocks: dict[str, torch.Tensor], batch_size: int, amp, dist: Distributed
             ) -> dict[str, float]:
    """Mean next-token loss (nats) on each source's validation blocks, over all ranks."""
    net.eval()
    losses = {}
    for name, data in blocks.items():
        total = torch.zeros(2, dtype=torch.float64, device=dist.device)
        for i in range(0, len(data), batch_size):
            batch = data[i:i + batch_size].to(dist.device)
            with amp:
                _, loss = net(batch[:, :-1], batch[:, 1:])
            n = batch[:, 1:].numel()
            total += torch.stack([loss.double() * n, torch.tensor(n, dtype=torch.float64, device=dist.device)])
        dist.all_reduce(total)
        losses[name] = float(total[0] / total[1])
    net.train()
    return losses


# ------------------------------------------------------------------------------------------------ what users see
class Metrics:
    """`metrics.jsonl` (one JSON object per log or eval) and the `loss.png` drawn from it; only rank 0 writes."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.path, self.png, self.enabled = out_dir / "metrics.jsonl", out_dir / "loss.png", enabled

    def start(self, step: int) -> None:
        """Keep the records up to `step` (the checkpoint resumed from); a fresh run (step 0) starts empty."""
        if not self.enabled:
            return
        kept = []
        if step and self.path.exists():
            kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and _step_of(line) is not None and _step_of(line) <= step]
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def plot(self, title: str) -> None:
        if self.enabled:
            plot_losses(self.path, self.png, title)


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut short by a crash
        return None


def plot_losses(metrics_path: str | os.PathLike, png_path: str | os.PathLike, title: str = "") -> None:
    """Draw train loss and each source's validation loss against steps into `png_path` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val = [], {}
    for line in Path(metrics_path).read_text(encoding="utf-8").splitlines():
        if _step_of(line) is None:
            continue
        rec = json.loads(line)
        if rec.get("kind") == "train":
            train.append((rec["step"], rec["loss"]))
        elif rec.get("kind") == "val":
            for name, loss in rec["loss"].items():
                val.setdefault(name, []).append((rec["step"], loss))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), color="0.6", linewidth=1, label="train")
    for name, points in val.items():
        ax.plot(*zip(*points), marker="o", markersize=3, linewidth=1.5, label=f"val {name}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


class StopRequest:
    """SIGINT/SIGTERM ask the run to stop after the current step with a checkpoint; a second Ctrl-C aborts."""

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step, with a checkpoint (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# --------------------------------------------------------------------------------------------------------- train
def train(config: TrainConfig, out_dir: str | os.PathLike, *, resume: bool = False, stop_at: int | None = None,
          console: Any = None) -> dict[str, Any]:
    """Train (or with `resume`, continue from `out_dir`'s checkpoint) until `config.max_steps`, or until step
    `stop_at`, or until SIGINT/SIGTERM; leave a checkpoint either way. Run under `torchrun` for DDP.

    Returns the summary also written to `out_dir/_summary.json`: steps, tokens, final train and validation losses,
    tokens/s, MFU and whether the run stopped before max_steps.
    """
    from rich.console import Console

    config.validate()
    console = console or Console(stderr=True, highlight=False)
    with distributed(config.device) as dist, StopRequest() as stop:
        return _train(config, Path(out_dir), dist, stop, resume=resume, stop_at=stop_at, console=console)


def _train(config: TrainConfig, out_dir: Path, dist: Distributed, stop: StopRequest, *, resume: bool,
           stop_at: int | None, console: Any) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel

    def say(message: str) -> None:
        if dist.is_main:
            console.print(message, soft_wrap=True)

    if config.grad_accum % dist.world_size:
        raise TrainError(f"grad_accum ({config.grad_accum}) must be a multiple of the number of ranks "
                         f"({dist.world_size}): it counts micro-batches over all ranks")
    ckpt_path = checkpoint.path_in(out_dir)
    meta = model_state = optim_state = None
    if ckpt_path.exists():
        if not resume:
            raise TrainError(f"{out_dir} already holds a checkpoint (step {checkpoint.read_meta(ckpt_path)['step']}); "
                             "pass --resume to continue it, or choose another --out")
        meta, model_state, optim_state = checkpoint.load(ckpt_path)
        _check_resumable(TrainConfig(**meta["train_config"]), config, meta, dist)
    elif resume:
        say(f"no checkpoint in {out_dir}: starting from step 0")

    reader = open_reader(config, "train", rank=dist.rank, world_size=dist.world_size, sets=config.sets)
    if config.vocab_size is not None and config.vocab_size < reader.vocab_size:
        raise TrainError(f"vocab_size {config.vocab_size} is smaller than the tokenizer's {reader.vocab_size}")
    gpt_config = model_mod.preset(config.preset, config.vocab_size or reader.vocab_size, n_layer=config.n_layer,
                                  n_head=config.n_head, n_embd=config.n_embd, block_size=config.block_length(),
                                  dropout=config.dropout)
    if meta is not None and dataclasses.asdict(gpt_config) != meta["model_config"]:
        raise TrainError(f"the checkpoint's model {meta['model_config']} differs from this run's "
                         f"{dataclasses.asdict(gpt_config)} (did the corpus's tokenizer change?)")
    device = dist.device
    amp_dtype = torch.bfloat16 if config.dtype == "bfloat16" or (
        config.dtype == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()) else torch.float32
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype != torch.float32 else contextlib.nullcontext()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    net = model_mod.GPT(gpt_config).to(device)
    optimizer = net.optimizer(config.lr, (config.beta1, config.beta2), config.weight_decay,
                              fused=device.type == "cuda")
    step = 0
    if meta is not None:
        net.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        step = meta["step"]
        reader.load_state_dict(meta["readers"][dist.rank])
        checkpoint.set_rng_state(meta["rng"][dist.rank], device)
    else:
        torch.manual_seed(config.seed + dist.rank)  # dropout masks differ between ranks
    model = torch.compile(net) if (config.compile if config.compile is not None else device.type == "cuda") else net
    if dist.active:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    tokenizer = open_tokenizer(config, reader)
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / "tokenizer.json", tokenizer.to_str())
        write_json_atomic(out_dir / "config.json", {"train": dataclasses.asdict(config),
                                                    "model": dataclasses.asdict(gpt_config)})
    sets = config.sets or list(reader.sets)
    val_blocks = validation_blocks(config, sets, dist)
    metrics = Metrics(out_dir, enabled=dist.is_main)
    metrics.start(step)
    title = f"{config.preset}: {net.num_params() / 1e6:.2f}M parameters"

    micro_steps = config.grad_accum // dist.world_size
    tokens_per_step = config.batch_size * config.grad_accum * gpt_config.block_size
    flops_per_token = net.flops_per_token()
    peak, peak_source = peak_flops(device, amp_dtype, config.peak_tflops)
    say(f"[bold]pretrain[/bold] {title}, vocab {gpt_config.vocab_size:,}, block {gpt_config.block_size}, "
        f"{tokens_per_step:,} tokens/step on {dist.world_size} × {device.type} ({dtype_name(amp_dtype)}); "
        f"steps {step} -> {config.max_steps}; MFU against {peak / 1e12:.3g} TFLOP/s per device ({peak_source})")

    best = {"loss": meta.get("best_val_loss"), "step": meta.get("best_step")} if meta else {"loss": None, "step": None}

    def run_eval() -> dict[str, float]:
        losses = evaluate(net, val_blocks, config.batch_size, amp, dist)
        mean = sum(losses.values()) / len(losses)
        metrics.write({"kind": "val", "step": step, "tokens": step * tokens_per_step, "loss": losses, "mean": mean})
        metrics.plot(title)
        improved = best["loss"] is None or mean < best["loss"]
        say(f"step {step:>6}: val " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
            + (" (best so far)" if improved and step else ""))
        if improved:  # every rank sees the same all-reduced losses, so they agree; rank 0 writes
            best.update(loss=mean, step=step)
            if dist.is_main:
                checkpoint.save(checkpoint.path_in(out_dir, "best"), net, None, {
                    "step": step, "val_loss": losses, "train_config": dataclasses.asdict(config),
                    "model_config": dataclasses.asdict(gpt_config), "eot_id": reader.eot_id,
                    "sets": list(reader.sets)})
        return losses

    def save() -> None:
        readers = dist.gather(reader_state)
        rngs = dist.gather(checkpoint.rng_state(device))
        if dist.is_main:
            checkpoint.save(ckpt_path, net, optimizer, {
                "step": step, "tokens": step * tokens_per_step, "world_size": dist.world_size,
                "train_config": dataclasses.asdict(config), "model_config": dataclasses.asdict(gpt_config),
                "readers": readers, "rng": rngs, "eot_id": reader.eot_id, "sets": list(reader.sets),
                "best_val_loss": best["loss"], "best_step": best["step"]})

    val_losses = run_eval() if step == 0 else {}
    reader_state = copy.deepcopy(reader.state_dict())  # before the read-ahead thread moves the reader
    batches = BlockBatches(reader, config.batch_size, device)
    train_seconds, train_tokens, last_loss, mfu = 0.0, 0, float("nan"), 0.0
    window_t0, window_tokens = time.perf_counter(), 0
    first_step, startup_seconds = step + 1, None
    stopped = False
    try:
        while step < config.max_steps:
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=device)
            for micro in range(micro_steps):
                x, y, reader_state = batches.next()
                if dist.active:  # average gradients over ranks once per step, not after every micro-batch
                    model.require_backward_grad_sync = micro == micro_steps - 1
                with amp:
                    _, loss = model(x, y)
                (loss / micro_steps).backward()
                loss_sum += loss.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip) \
                if config.grad_clip > 0 else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_tokens += tokens_per_step

            stop_now = stop.requested or step == stop_at
            if dist.active:  # every rank must stop at the same step
                stop_now = bool(dist.all_reduce(torch.tensor([int(stop_now)], device=device), "max").item())
            last_step = step == config.max_steps or stop_now
            if step == first_step and not (step % config.log_interval == 0 or last_step):
                # the first step compiles the model (torch.compile), starts CUDA and fills caches: timed apart, so
                # tokens/s and MFU describe training
                startup_seconds = time.perf_counter() - window_t0
                window_t0, window_tokens = time.perf_counter(), 0
            if step % config.log_interval == 0 or last_step:
                last_loss = float(dist.all_reduce(loss_sum / micro_steps) / dist.world_size)
                seconds = time.perf_counter() - window_t0
                train_seconds += seconds
                train_tokens += window_tokens
                tok_s = window_tokens / seconds
                mfu = flops_per_token * tok_s / dist.world_size / peak
                if mfu > 1 and peak_source.startswith("measured"):
                    # the peak was measured while other work had the cores: measure again, keep the higher
                    peak = max(peak, measure_matmul_flops(str(device), amp_dtype))
                    mfu = flops_per_token * tok_s / dist.world_size / peak
                metrics.write({"kind": "train", "step": step, "tokens": step * tokens_per_step, "loss": last_loss,
                               "lr": lr, "grad_norm": None if grad_norm is None else float(grad_norm),
                               "tokens_per_s": tok_s, "mfu": mfu})
                left = (config.max_steps - step) * tokens_per_step / (train_tokens / train_seconds)
                say(f"step {step:>6}/{config.max_steps} | loss {last_loss:.4f} | lr {lr:.2e} | {tok_s:,.0f} tok/s | "
                    f"MFU {mfu:.1%} | {_clock(train_seconds)} training, ~{_clock(left)} left")
            if step % config.eval_interval == 0 or last_step:
                val_losses = run_eval()
            if step % config.checkpoint_interval == 0 or last_step:
                save()
            if step % config.log_interval == 0 or last_step:  # time the next window from here: evals don't count
                window_t0, window_tokens = time.perf_counter(), 0
            if stop_now:
                stopped = step < config.max_steps
                break
    finally:
        batches.close()

    summary = {"step": step, "max_steps": config.max_steps, "stopped_early": stopped,
               "tokens": step * tokens_per_step, "train_loss": last_loss, "val_loss": val_losses,
               "tokens_per_s": train_tokens / train_seconds if train_seconds else None, "mfu": mfu,
               "train_seconds": train_seconds, "startup_seconds": startup_seconds,
               "best_val_loss": best["loss"], "best_step": best["step"],
               "parameters": net.num_params(), "vocab_size": gpt_config.vocab_size,
               "flops_per_token": flops_per_token,
               "world_size": dist.world_size,
               "device": device.type, "dtype": dtype_name(amp_dtype), "peak_flops": peak, "peak_source": peak_source}
    if dist.is_main:
        write_json_atomic(out_dir / "_summary.json", summary)
        _print_summary(summary, out_dir, console)
    return summary


def _check_resumable(old: TrainConfig, new: TrainConfig, meta: dict[str, Any], dist: Distributed) -> None:
    changed = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name not in RESUMABLE and getattr(old, f.name) != getattr(new, f.name)]
    if changed:
        raise TrainError("cannot resume with different " + ", ".join(
            f"{name} ({getattr(old, name)!r} -> {getattr(new, name)!r})" for name in changed)
            + f"; only {', '.join(sorted(RESUMABLE))} may change")
    if meta["world_size"] != dist.world_size:
        raise TrainError(f"the checkpoint was written by {meta['world_size']} rank(s); resume it with the same "
                         f"number (now {dist.world_size}) so every rank continues its own part of the stream")


def _print_summary(summary: dict[str, Any], out_dir: Path, console: Any) -> None:
    from rich.table import Table

    table = Table(title="pretrain: summary", header_style="bold")
    table.add_column("what")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_row("steps", f"{summary['step']:,} / {summary['max_steps']:,}"
                  + (" (stopped early; --resume continues)" if summary["stopped_early"] else ""))
    table.add_row("tokens", f"{summary['tokens']:,}")
    table.add_row("parameters", f"{summary['parameters']:,}")
    table.add_row("train loss", f"{summary['train_loss']:.4f}")
    for name, loss in summary["val_loss"].items():
        table.add_row(f"val loss {name}", f"{loss:.4f}")
    if summary["tokens_per_s"]:
        table.add_row("tokens/s", f"{summary['tokens_per_s']:,.0f}")
    if summary["best_val_loss"] is not None:
        table.add_row("best val loss (mean)", f"{summary['best_val_loss']:.4f} at step {summary['best_step']:,}")
    table.add_row("MFU", f"{summary['mfu']:.1%}")
    table.add_row("training seconds", f"{summary['train_seconds']:.1f}")
    if summary["startup_seconds"] is not None:
        table.add_row("start-up (step 1)", f"{summary['startup_seconds']:.1f} s")
    console.print(table)
    console.print(f"checkpoint.safetensors (resume), best.safetensors (lowest val loss), metrics.jsonl and loss.png "
                  f"in {out_dir}", soft_wrap=True)
