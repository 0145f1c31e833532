"""The training core every method runs on (pretraining, SFT, and next the reward model, DPO and PPO): a method
supplies its model, its batches, its loss and its evaluation; the core does the rest, the same way for all.

    with loop.Run(config, out_dir, "sft", resume=resume) as run:      # devices, DDP, Ctrl-C, the checkpoint
        reader.load_state_dict(run.data_state) if run.data_state else None
        return run.train(net, ReadAhead(...), loss=..., evaluate=..., tokens_per_step=...)

What the core owns:
* `RunConfig`: optimizer (AdamW), schedule (linear warmup, cosine decay to `min_lr`), clipping, accumulation
  (`grad_accum` counts micro-batches over all ranks, so the global batch and the result do not depend on the number
  of processes), intervals, seed and devices. A method's config extends it.
* `Run`: joins the data-parallel group (`devices`), catches SIGINT/SIGTERM to stop after the step with a checkpoint,
  refuses to overwrite a run or to resume one with other settings, and `train` runs the loop: every step, the
  learning rate, micro-batches with gradients averaged over ranks once, clipping, the optimizer step; every
  `log_interval` steps a line and a `metrics.jsonl` record (loss, tokens/s, MFU); every `eval_interval` steps the
  method's evaluation, `loss.png`, and `best.safetensors` when the mean validation loss is the lowest so far; every
  `checkpoint_interval` steps (and at the end or a stop) `checkpoint.safetensors`, from which `--resume` continues
  bit for bit: weights, optimizer, step, every rank's data position and RNG state.
* `ReadAhead`: a method's batches, read one ahead in a thread, each with the data position after it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from corpusforge.errors import UserError
from corpusforge.options import option
from corpusforge.runtime import write_json_atomic, write_text_atomic
from corpusforge.trainer import checkpoint, devices
from corpusforge.trainer.metrics import Metrics, clock, print_summary


class TrainError(UserError, RuntimeError):
    """A run cannot start or continue as asked; the message says why and what to do."""


@dataclasses.dataclass
class RunConfig:
    """What every training method sets the same way; `corpusforge train METHOD --set KEY=VALUE` sets any of it."""

    batch_size: int = 16  # sequences per micro-batch on each rank
    grad_accum: int = 1  # micro-batches per optimizer step over all ranks (a multiple of the number of ranks)
    max_steps: int = dataclasses.field(default=600, metadata=option(
        "optimizer steps in all (the schedule ends there)"))
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 turns clipping off
    eval_interval: int = 100
    log_interval: int = 10
    checkpoint_interval: int = 100
    seed: int = 1337
    device: str = dataclasses.field(default="auto", metadata=option("auto (cuda when present, else cpu), cpu, cuda, "
                                                                    "cuda:N"))
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 autocast on CUDA, float32 on CPU
    compile: bool | None = dataclasses.field(default=None, metadata=option(
        "torch.compile the model (none: on CUDA only)"))
    peak_tflops: float | None = None  # per device, for MFU; default: datasheet for known GPUs, else measured

    # Settings a resumed run may change: they steer the run, not what it computes (max_steps stretches the schedule).
    RESUMABLE: ClassVar[frozenset[str]] = frozenset({
        "max_steps", "log_interval", "eval_interval", "checkpoint_interval", "device", "compile", "peak_tflops"})

    def validate(self) -> None:
        for name in ("batch_size", "grad_accum", "max_steps", "eval_interval", "log_interval", "checkpoint_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"min_lr: must be in (0, lr={self.lr}], got {self.min_lr}")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError(f"warmup_steps: must be in [0, max_steps={self.max_steps}), got {self.warmup_steps}")
        if self.device != "auto" and not self.device.startswith(("cpu", "cuda", "mps")):
            raise ValueError(f"device: 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


def make_config(cls: type, method: str, out_dir: str | os.PathLike, values: dict[str, Any],
                defaults: dict[str, Any], *, resume: bool):
    """The config (of class `cls`) of a `method` run: `defaults` or, when resuming a run with a checkpoint, that
    run's config; then `values` on top. Raises recipe.RecipeError naming a bad key."""
    from corpusforge import recipe

    path = checkpoint.path_in(out_dir)
    base = defaults
    if resume and path.exists():
        meta = checkpoint.read_meta(path)
        _check_method(meta, method, path)
        base = meta["train_config"]
    return recipe.from_dict(cls, {**base, **values}, f"train {method}")


def _check_method(meta: dict[str, Any], method: str, path: Path) -> None:
    if meta.get("method", "pretrain") != method:  # checkpoints from before SFT existed are pretraining ones
        raise TrainError(f"{path} is a {meta.get('method', 'pretrain')} checkpoint; this is `train {method}`")


def lr_at(step: int, config: RunConfig) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then cosine decay to min_lr at max_steps."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / (config.warmup_steps + 1)
    if step >= config.max_steps:
        return config.min_lr
    ratio = (step - config.warmup_steps) / (config.max_steps - config.warmup_steps)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (config.lr - config.min_lr)


def with_epoch_steps(config: RunConfig, examples: int, per_step: int) -> RunConfig:
    """`config` with `max_steps` 0 (a method's "as many as the epochs take") replaced by the optimizer steps
    `config.epochs` passes over `examples` take at `per_step` examples a step, at least one past the warmup."""
    if config.max_steps:
        return config
    steps = math.ceil(config.epochs * examples / per_step)
    return dataclasses.replace(config, max_steps=max(steps, config.warmup_steps + 1))


# --------------------------------------------------------------------------------------------------------- data
class ReadAhead:
    """Batches from `read()` (a tensor or a tuple of tensors on the CPU), read one ahead in a thread so reading
    overlaps the step. `state()` is the data position after a read; `position` is the one after the last batch
    handed out by `next`, which is what a checkpoint stores (not the position of the batch read ahead)."""

    def __init__(self, read: Callable[[], Any], state: Callable[[], dict], device: torch.device, depth: int = 2):
        self._read, self._state, self._device = read, state, device
        self.position = copy.deepcopy(state())  # before the thread moves the reader
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="corpusforge-batches", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._read()
                if self._device.type == "cuda":
                    batch = _map(batch, torch.Tensor.pin_memory)
                self._put((batch, copy.deepcopy(self._state())))
        except BaseException as err:  # the trainer re-raises it in the main thread
            self._put(err)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self) -> Any:
        """The next batch, on the device."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        batch, self.position = item
        return _map(batch, lambda t: t.to(self._device, non_blocking=True))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _map(batch: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    return tuple(fn(t) for t in batch) if isinstance(batch, tuple) else fn(batch)


@torch.no_grad()
def token_loss(net: torch.nn.Module, batches, amp, dist: devices.Distributed) -> float:
    """Mean next-token loss (nats) over the target tokens (those not -1) of `batches` of (inputs, targets) or
    (inputs, targets, document ids) on every rank together, in eval mode (no dropout)."""
    was_training = net.training
    net.eval()
    total = torch.zeros(2, dtype=torch.float64, device=dist.device)
    for batch in batches:
        x, y, *doc_ids = (t.to(dist.device) for t in batch)
        with amp:
            _, loss = net(x, y, **({"doc_ids": doc_ids[0]} if doc_ids else {}))
        n = (y != -1).sum().double()
        total += torch.stack([loss.double() * n, n])
    dist.all_reduce(total)
    net.train(was_training)
    return float(total[0] / total[1])


# ------------------------------------------------------------------------------------------------------ the run
class Run:
    """One training run in `out_dir` for method `method` ("pretrain", "sft", ...). Entered, it joins the
    data-parallel group, catches SIGINT/SIGTERM, and, with `resume`, opens the run's checkpoint and checks that it
    belongs to this run and these settings; `train` then runs the loop (see the module doc).

    Before `train`, a method reads `dist` (its rank's part of the data), `data_state` (where this rank's data
    continues when resuming; None on a fresh run) and `amp` (for its evaluation)."""

    def __init__(self, config: RunConfig, out_dir: str | os.PathLike, method: str, *, resume: bool = False,
                 stop_at: int | None = None, console: Any = None):
        from rich.console import Console

        config.validate()
        self.config, self.out_dir, self.method = config, Path(out_dir), method
        self.resume, self.stop_at = resume, stop_at
        self.console = console or Console(stderr=True, highlight=False)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Run:
        try:
            self.dist = self._stack.enter_context(devices.distributed(self.config.device))
            self.stop = self._stack.enter_context(StopRequest())
            self._open_checkpoint()
        except BaseException:
            self._stack.close()
            raise
        self.amp_dtype, self.amp = devices.autocast(self.dist.device, self.config.dtype)
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def say(self, message: str) -> None:
        if self.dist.is_main:
            self.console.print(message, soft_wrap=True)

    def _open_checkpoint(self) -> None:
        config, dist = self.config, self.dist
        if config.grad_accum % dist.world_size:
            raise TrainError(f"grad_accum ({config.grad_accum}) must be a multiple of the number of ranks "
                             f"({dist.world_size}): it counts micro-batches over all ranks")
        path = checkpoint.path_in(self.out_dir)
        self.meta = self._model_state = self._optim_state = None
        self.data_state = None
        if path.exists():
            if not self.resume:
                raise TrainError(f"{self.out_dir} already holds a checkpoint (step {checkpoint.read_meta(path)['step']}"
                                 "); pass --resume to continue it, or choose another --out")
            self.meta, self._model_state, self._optim_state = checkpoint.load(path)
            self._check_resumable()
            self.data_state = self.meta["readers"][dist.rank]
        elif self.resume:
            self.say(f"no checkpoint in {self.out_dir}: starting from step 0")

    def _check_resumable(self) -> None:
        meta, config = self.meta, self.config
        _check_method(meta, self.method, checkpoint.path_in(self.out_dir))
        old = type(config)(**meta["train_config"])
        changed = [f.name for f in dataclasses.fields(config)
                   if f.name not in config.RESUMABLE and getattr(old, f.name) != getattr(config, f.name)]
        if changed:
            raise TrainError("cannot resume with different " + ", ".join(
                f"{name} ({getattr(old, name)!r} -> {getattr(config, name)!r})" for name in changed)
                + f"; only {', '.join(sorted(config.RESUMABLE))} may change")
        if meta["world_size"] != self.dist.world_size:
            raise TrainError(f"the checkpoint was written by {meta['world_size']} rank(s); resume it with the same "
                             f"number (now {self.dist.world_size}) so every rank continues its own part of the stream")
        # A checkpoint copied in from another run would continue that run here and mix the two runs' metrics.
        run_file = self.out_dir / "config.json"
        if run_file.exists():
            run = json.loads(run_file.read_text(encoding="utf-8"))
            ours = {**{k: v for k, v in run.get("train", {}).items() if k not in config.RESUMABLE},
                    **{f"model {k}": v for k, v in run.get("model", {}).items()}}
            theirs = {**{k: v for k, v in meta["train_config"].items() if k not in config.RESUMABLE},
                      **{f"model {k}": v for k, v in meta["model_config"].items()}}
            differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
            if differ:
                raise TrainError(
                    f"{checkpoint.path_in(self.out_dir)} is from another run than {run_file}: " + ", ".join(
                        f"{k} {ours.get(k)!r} in config.json, {theirs.get(k)!r} in the checkpoint" for k in differ)
                    + "; resume a checkpoint only in the folder of the run that wrote it")

    def write_files(self, tokenizer: Any, config: dict[str, Any]) -> None:
        """`tokenizer.json` and `config.json` (what `generate` and a reader of the run need), by rank 0."""
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out_dir / "tokenizer.json", tokenizer.to_str())
            write_json_atomic(self.out_dir / "config.json", config)

    def train(self, net: torch.nn.Module, batches: ReadAhead, *, loss: Callable[[torch.nn.Module, Any], torch.Tensor],
              evaluate: Callable[[torch.nn.Module], dict[str, float]], tokens_per_step: int, title: str,
              meta: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
              stats: Callable[[], dict[str, float]] | None = None) -> dict[str, Any]:
        """Train `net` (on the CPU, freshly built or loaded: the checkpoint's weights replace its own when
        resuming) until `max_steps`, `stop_at` or a stop signal; closes `batches`. `loss(model, batch)` is the mean
        loss of one micro-batch; `evaluate(net)` gives validation losses by name, all ranks agreeing (the best
        weights are those of the lowest mean); `meta` goes into every checkpoint; `data` (what was read, what was
        skipped) into the summary; `stats()`, called on every rank at each log, what the method measured since the
        last one (every rank agreeing: PPO's reward, KL, ...), goes into the log line, `metrics.jsonl` and the
        summary. Returns the summary also written to `_summary.json`."""
        try:
            return self._train(net, batches, loss, evaluate, tokens_per_step, title, meta or {}, data, stats)
        finally:
            batches.close()

    def _train(self, net, batches, loss_of, evaluate, tokens_per_step, title, extra, data, stats
               ) -> dict[str, Any]:
        from torch.nn.parallel import DistributedDataParallel

        config, dist, out_dir, say = self.config, self.dist, self.out_dir, self.say
        model_config = dataclasses.asdict(net.config)
        if self.meta is not None and model_config != self.meta["model_config"]:
            raise TrainError(f"the checkpoint's model {self.meta['model_config']} differs from this run's "
                             f"{model_config} (did the corpus's tokenizer change?)")
        device = dist.device
        net = net.to(device)
        optimizer = net.optimizer(config.lr, (config.beta1, config.beta2), config.weight_decay,
                                  fused=device.type == "cuda")
        step = 0
        if self.meta is not None:
            net.load_state_dict(self._model_state)
            optimizer.load_state_dict(self._optim_state)
            step = self.meta["step"]
            checkpoint.set_rng_state(self.meta["rng"][dist.rank], device)
        else:
            torch.manual_seed(config.seed + dist.rank)  # dropout masks differ between ranks
        model = torch.compile(net) if (config.compile if config.compile is not None else device.type == "cuda") \
            else net
        if dist.active:
            model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

        metrics = Metrics(out_dir, enabled=dist.is_main)
        metrics.start(step)
        micro_steps = config.grad_accum // dist.world_size
        flops_per_token = net.flops_per_token()
        peak, peak_source = devices.peak_flops(device, self.amp_dtype, config.peak_tflops)
        say(f"[bold]{self.method}[/bold] {title}, vocab {net.config.vocab_size:,}, block {net.config.block_size}, "
            f"{tokens_per_step:,} tokens/step on {dist.world_size} × "
            f"{device.type} ({devices.dtype_name(self.amp_dtype)}); steps {step} -> {config.max_steps}; MFU against "
            f"{peak / 1e12:.3g} TFLOP/s per device ({peak_source})")
        best = {"loss": self.meta.get("best_val_loss"), "step": self.meta.get("best_step")} if self.meta else \
            {"loss": None, "step": None}
        common = {"method": self.method, "train_config": dataclasses.asdict(config), "model_config": model_config,
                  **extra}

        def run_eval() -> dict[str, float]:
            net.eval()
            losses = evaluate(net)
            net.train()
            mean = sum(losses.values()) / len(losses)
            metrics.write({"kind": "val", "step": step, "tokens": step * tokens_per_step, "loss": losses,
                           "mean": mean})
            metrics.plot(title)
            improved = best["loss"] is None or mean < best["loss"]
            say(f"step {step:>6}: val " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
                + (" (best so far)" if improved and step else ""))
            if improved:  # every rank sees the same all-reduced losses, so they agree; rank 0 writes
                best.update(loss=mean, step=step)
                if dist.is_main:
                    checkpoint.save(checkpoint.path_in(out_dir, "best"), net, None,
                                    {"step": step, "val_loss": losses, **common})
            return losses

        def save() -> None:
            readers = dist.gather(batches.position)
            rngs = dist.gather(checkpoint.rng_state(device))
            if dist.is_main:
                checkpoint.save(checkpoint.path_in(out_dir), net, optimizer, {
                    "step": step, "tokens": step * tokens_per_step, "world_size": dist.world_size,
                    "readers": readers, "rng": rngs, "best_val_loss": best["loss"], "best_step": best["step"],
                    **common})

        val_losses = run_eval() if step == 0 else {}
        train_seconds, train_tokens, last_loss, mfu = 0.0, 0, float("nan"), 0.0
        remeasured, measured = False, {}
        window_t0, window_tokens = time.perf_counter(), 0
        first_step, startup_seconds = step + 1, None
        stopped = False
        while step < config.max_steps:
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=device)
            for micro in range(micro_steps):
                batch = batches.next()
                if dist.active:  # average gradients over ranks once per step, not after every micro-batch
                    model.require_backward_grad_sync = micro == micro_steps - 1
                with self.amp:
                    loss = loss_of(model, batch)
                (loss / micro_steps).backward()
                loss_sum += loss.detach()
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip) \
                if config.grad_clip > 0 else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_tokens += tokens_per_step

            stop_now = self.stop.requested or step == self.stop_at
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
                if mfu > 1 and peak_source.startswith("measured") and not remeasured:
                    # the peak was measured while other work had the cores: measure again (once: a CPU's bf16
                    # matmul can stay slower than the training's mixed kernels, and each measure costs seconds)
                    remeasured = True
                    peak = max(peak, devices.measure_matmul_flops(str(device), self.amp_dtype))
                    mfu = flops_per_token * tok_s / dist.world_size / peak
                measured = stats() if stats else {}
                metrics.write({"kind": "train", "step": step, "tokens": step * tokens_per_step, "loss": last_loss,
                               "lr": lr, "grad_norm": None if grad_norm is None else float(grad_norm),
                               "tokens_per_s": tok_s, "mfu": mfu, **measured})
                left = (config.max_steps - step) * tokens_per_step / (train_tokens / train_seconds)
                say(f"step {step:>6}/{config.max_steps} | loss {last_loss:.4f} | lr {lr:.2e} | {tok_s:,.0f} tok/s | "
                    f"MFU {mfu:.1%} | {clock(train_seconds)} training, ~{clock(left)} left"
                    + "".join(f" | {k} {v:.4g}" for k, v in measured.items()))
            if step % config.eval_interval == 0 or last_step:
                val_losses = run_eval()
            if step % config.checkpoint_interval == 0 or last_step:
                save()
            if step % config.log_interval == 0 or last_step:  # time the next window from here: evals don't count
                window_t0, window_tokens = time.perf_counter(), 0
            if stop_now:
                stopped = step < config.max_steps
                break

        summary = {"method": self.method, "step": step, "max_steps": config.max_steps, "stopped_early": stopped,
                   "tokens": step * tokens_per_step, "train_loss": last_loss, "val_loss": val_losses,
                   "tokens_per_s": train_tokens / train_seconds if train_seconds else None, "mfu": mfu,
                   "train_seconds": train_seconds, "startup_seconds": startup_seconds,
                   "best_val_loss": best["loss"], "best_step": best["step"],
                   "parameters": net.num_params(), "vocab_size": net.config.vocab_size,
                   "flops_per_token": flops_per_token, "world_size": dist.world_size, "device": device.type,
                   "dtype": devices.dtype_name(self.amp_dtype), "peak_flops": peak, "peak_source": peak_source}
        if data:
            summary["data"] = data
        if measured:
            summary["stats"] = measured
        if dist.is_main:
            write_json_atomic(out_dir / "_summary.json", summary)
            print_summary(summary, out_dir, self.console)
        return summary


# ---------------------------------------------------------------------------------------------------- stopping
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
