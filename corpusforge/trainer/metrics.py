"""What users see of a training run: `metrics.jsonl` (one JSON object per log line or evaluation), the `loss.png`
drawn from it, and the summary table at the end. The training core (`loop`) writes them; only rank 0 does."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from corpusforge.runtime import atomic_path, write_text_atomic


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
    """Draw train loss and each validation loss against steps into `png_path` (atomically)."""
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


def clock(seconds: float) -> str:
    """`seconds` as H:MM:SS."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def print_summary(summary: dict[str, Any], out_dir: Path, console: Any) -> None:
    """The run's summary table (steps, tokens, losses, speed, MFU) on `console`."""
    from rich.table import Table

    table = Table(title=f"{summary['method']}: summary", header_style="bold")
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
    for key, value in summary.get("data", {}).items():
        table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    console.print(f"checkpoint.safetensors (resume), best.safetensors (lowest val loss), metrics.jsonl and loss.png "
                  f"in {out_dir}", soft_wrap=True)
