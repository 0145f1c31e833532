"""Where a run trains: the data-parallel group (`distributed`), the precision (`autocast`) and the peak FLOP/s that
model FLOPs utilization is measured against (`peak_flops`).

Started by `torchrun`, `distributed()` joins the process group the environment describes (NCCL on CUDA, gloo on
the CPU); started plainly, it is a group of one, and the loop runs the same code path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from typing import Any

import torch

# Dense bf16 tensor-core peaks from the vendors' datasheets (SXM parts), FLOP/s.
_GPU_PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


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


def autocast(device: torch.device, dtype: str = "auto") -> tuple[torch.dtype, Any]:
    """(the dtype matmuls run in, a context that makes them run so): bf16 autocast when asked for, or by default on
    a CUDA device that supports it; float32 (no autocast) otherwise. On CUDA, float32 matmuls may use TF32."""
    amp_dtype = torch.bfloat16 if dtype == "bfloat16" or (
        dtype == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()) else torch.float32
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    context = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype != torch.float32 else contextlib.nullcontext()
    return amp_dtype, context


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
    moment when other work had the cores), within about `bursts * seconds` in all: where one matmul is slow (bf16
    is emulated on most CPUs, 2 s a matmul here) the bursts stop at that budget instead of taking 8 matmuls."""
    n = 4096 if device.startswith("cuda") else 1024
    a = b = torch.full((n, n), 0.5, device=device, dtype=dtype)  # not randn: that would move the training RNG
    best, start = 0.0, time.perf_counter()
    for _ in range(bursts):
        if best and time.perf_counter() - start > bursts * seconds:
            break
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
