"""Sample text from a trained run: load its checkpoint's weights and its tokenizer, continue a prompt."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from corpusforge.trainer import checkpoint
from corpusforge.trainer.model import GPT, GPTConfig


def load_model(run_dir: str | os.PathLike, device: str = "cpu", which: str | None = None) -> tuple[GPT, dict]:
    """A run's model (verified), in eval mode on `device`, and its metadata: `which` is "best" (the weights at the
    lowest validation loss), "last" (the latest checkpoint), or None for best when the run has one, else last."""
    if which is None:
        which = "best" if checkpoint.path_in(run_dir, "best").exists() else "last"
    meta, weights = checkpoint.load_weights(checkpoint.path_in(run_dir, which))
    net = GPT(GPTConfig(**meta["model_config"]))
    net.load_state_dict(weights)
    return net.to(device).eval(), meta


def generate_text(run_dir: str | os.PathLike, prompt: str, *, max_new_tokens: int = 200, temperature: float = 0.8,
                  top_k: int | None = 200, top_p: float | None = None, num_samples: int = 1, seed: int = 1337,
                  device: str = "cpu", which: str | None = None) -> list[str]:
    """`num_samples` continuations of `prompt` (the prompt included), each stopping at end-of-text. The same seed
    gives the same samples. An empty prompt starts from end-of-text, i.e. a new document. `which` as in
    `load_model`."""
    from tokenizers import Tokenizer

    net, meta = load_model(run_dir, device, which)
    tokenizer = Tokenizer.from_file(str(Path(run_dir) / "tokenizer.json"))
    eot = meta["eot_id"]
    ids = tokenizer.encode(prompt, add_special_tokens=False).ids if prompt else [eot]
    start = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = net.generate(start, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                       generator=generator, stop_token=eot)
    texts = []
    for row in out.tolist():
        new = row[len(ids):]
        new = new[:new.index(eot)] if eot in new else new
        texts.append(prompt + tokenizer.decode(new))
    return texts
