"""Training checkpoints: one safetensors file holding the weights, the optimizer state and, in its metadata, the
step, the configs, every rank's RNG states and reader position, and checksums of the metadata and the tensors.

A checkpoint is written under a temporary name, flushed to disk and renamed, so `RUN_DIR/checkpoint.safetensors` is
always a whole checkpoint (the previous one until the new one is complete). `RUN_DIR/best.safetensors` holds the
weights (no optimizer state) at the lowest mean validation loss so far: what `generate` samples from. Loading verifies the file: a truncated,
corrupted or foreign file is refused with a `CheckpointError` that names it, and nothing is loaded from it. The
weights are plain safetensors (keys `model.*`), readable by any safetensors tool.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import torch

from corpusforge.errors import UserError
from corpusforge.runtime import atomic_path

FILE_NAME = "checkpoint.safetensors"
BEST_FILE_NAME = "best.safetensors"
FORMAT = "corpusforge.checkpoint/1"
_META_KEY, _SUMS_KEY = "corpusforge.checkpoint", "corpusforge.checksums"
_MODEL, _OPTIM = "model.", "optim."


class CheckpointError(UserError, RuntimeError):
    """A checkpoint cannot be used: damaged, not a corpusforge checkpoint, or not matching this run."""


def path_in(run_dir: str | os.PathLike, which: str = "last") -> Path:
    """The run's resumable checkpoint (`last`) or its best-validation weights (`best`)."""
    if which not in ("last", "best"):
        raise ValueError(f"checkpoint: 'last' or 'best', got {which!r}")
    return Path(run_dir) / (FILE_NAME if which == "last" else BEST_FILE_NAME)


def rng_state(device: torch.device) -> dict[str, str]:
    """This process's torch RNG states (CPU, and the current CUDA device when training there), JSON-ready."""
    state = {"cpu": _b64(torch.get_rng_state())}
    if device.type == "cuda":
        state["cuda"] = _b64(torch.cuda.get_rng_state(device))
    return state


def set_rng_state(state: dict[str, str], device: torch.device) -> None:
    torch.set_rng_state(_unb64(state["cpu"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(_unb64(state["cuda"]), device)


def save(path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
         meta: dict[str, Any]) -> None:
    """Write weights, optimizer state (None: weights only) and `meta` (JSON-serializable: step, configs, RNG and
    reader states) to `path` atomically."""
    from safetensors.torch import save_file

    weights = {_MODEL + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_state = optimizer.state_dict() if optimizer is not None else {"state": {}, "param_groups": []}
    optim_tensors, optim_values = {}, {}
    for index, per_param in optim_state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                optim_tensors[f"{_OPTIM}{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                optim_values[f"{index}.{key}"] = value
    meta_json = json.dumps({**meta, "format": FORMAT, "param_groups": optim_state["param_groups"],
                            "optim_values": optim_values})
    sums = {"meta": _checksum_text(meta_json), "model": _checksum(weights), "optim": _checksum(optim_tensors)}
    with atomic_path(path) as tmp:
        save_file({**weights, **optim_tensors}, str(tmp), metadata={_META_KEY: meta_json, _SUMS_KEY: json.dumps(sums)})
        with open(tmp, "rb+") as f:  # on disk before the rename, so a crash cannot leave a renamed empty file
            os.fsync(f.fileno())


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of the checkpoint at `path` (step, configs, ...), without loading tensors."""
    return _open(path, want=())[0]


def load(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(metadata, model state dict, optimizer state dict) from a verified checkpoint, tensors on the CPU."""
    meta, tensors = _open(path, want=(_MODEL, _OPTIM))
    model_state = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(_OPTIM):
            index, name = key[len(_OPTIM):].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["optim_values"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return meta, model_state, {"state": state, "param_groups": groups}


def load_weights(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, model state dict) only, verified; what `generate` needs."""
    meta, tensors = _open(path, want=(_MODEL,))
    return meta, {k[len(_MODEL):]: v for k, v in tensors.items()}


def _open(path: str | os.PathLike, want: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    refuse = (f"{path}: damaged checkpoint, refused ({{}}). Nothing was loaded from it; restore a copy, or delete it "
              "to start over.")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            if _META_KEY not in header or _SUMS_KEY not in header:
                raise CheckpointError(f"{path}: not a corpusforge checkpoint (no {_META_KEY!r} metadata)")
            sums = json.loads(header[_SUMS_KEY])
            if _checksum_text(header[_META_KEY]) != sums.get("meta"):
                raise CheckpointError(refuse.format("its metadata does not match its checksum"))
            meta = json.loads(header[_META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys() if k.startswith(want)} if want else {}
    except CheckpointError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:  # truncated, garbled header or data
        raise CheckpointError(refuse.format(f"{type(err).__name__}: {err}")) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r}, this corpusforge reads {FORMAT!r}")
    for prefix, group in ((_MODEL, "model"), (_OPTIM, "optim")):
        if prefix in want and _checksum({k: v for k, v in tensors.items() if k.startswith(prefix)}) != \
                sums.get(group):
            raise CheckpointError(refuse.format(f"its {group} tensors do not match their checksum"))
    return meta, tensors


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    """xxh3-128 over names, dtypes, shapes and bytes, in name order."""
    import xxhash

    h = xxhash.xxh3_128()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _checksum_text(text: str) -> str:
    import xxhash

    return xxhash.xxh3_128_hexdigest(text.encode("utf-8"))


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)
