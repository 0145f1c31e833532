"""Where the app's answers come from: a trained run sampled through the chat template (`trainer.data.chat.render`)
with the key/value cache, at temperature 1 by default (InstructGPT sampled the answers labelers ranked at T = 1).

`RunAnswerer` is the one place the app touches the model: `sample` gives K answers to a conversation, `stream` one
reply piece by piece. Each call takes a seed, and the settings plus that seed are stored with what is shown, so
every answer can be sampled again.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Iterator

import torch


@dataclasses.dataclass
class Sampling:
    """How answers are sampled; stored with every offer."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 128

    def validate(self) -> None:
        if self.temperature < 0 or self.max_new_tokens < 1:
            raise ValueError("sampling: temperature >= 0 and max_new_tokens >= 1")


class RunAnswerer:
    """A run's model and tokenizer (loaded once), answering conversations. Calls are serialized: one model, one
    caller at a time (the web server runs them in worker threads)."""

    def __init__(self, run_dir: str | os.PathLike, sampling: Sampling | None = None, device: str = "cpu"):
        from corpusforge.mix.tokenizer import load as load_tokenizer
        from corpusforge.trainer.generate import load_model

        self.run_dir = Path(run_dir)
        self.model_name = str(self.run_dir.resolve())
        self.sampling = sampling or Sampling()
        self.sampling.validate()
        self.device = device
        self.net, meta = load_model(run_dir, device)
        self.tokenizer = load_tokenizer(self.run_dir / "tokenizer.json")  # special-token spellings stay plain text
        self.end_id = self.tokenizer.token_to_id("<|end|>")
        self.eot_id = meta["eot_id"]
        self._lock = threading.Lock()

    def settings(self, seed: int) -> dict:
        """The sampling settings of one call, as stored."""
        return {**dataclasses.asdict(self.sampling), "seed": seed}

    def sample(self, messages: list[dict[str, str]], k: int, seed: int) -> list[str]:
        """`k` independent replies to `messages` (which end with a user turn)."""
        pieces: list[list[int]] = [[] for _ in range(k)]
        for step in self._tokens(messages, k, seed):
            for row, token in enumerate(step):
                if token is not None:
                    pieces[row].append(token)
        return [self.tokenizer.decode(p) for p in pieces]

    def stream(self, messages: list[dict[str, str]], seed: int) -> Iterator[str]:
        """One reply to `messages`, as text pieces while it is sampled (their concatenation is the reply)."""
        ids: list[int] = []
        shown = ""
        for step in self._tokens(messages, 1, seed):
            ids.append(step[0])
            text = self.tokenizer.decode(ids)
            if not text.endswith("\ufffd"):  # a byte-level token can end inside a character: wait for the rest
                yield text[len(shown):]
                shown = text

    def _tokens(self, messages: list[dict[str, str]], k: int, seed: int) -> Iterator[list[int | None]]:
        """Per step, the next token of each of `k` rows (None once a row has stopped), sampled with the key/value
        cache, up to max_new_tokens."""
        from corpusforge.trainer.data.chat import render
        from corpusforge.trainer.model import KVCache

        prompt, _ = render(messages, self.tokenizer, for_generation=True)
        prompt = prompt[-(self.net.config.block_size - 1):]  # keep the end of a conversation longer than the model
        idx = torch.tensor([prompt] * k, dtype=torch.long, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        cache = KVCache(self.net.config, k, self.device, self.net.wte.weight.dtype)
        stops = (self.end_id, self.eot_id)
        done = [False] * k
        s = self.sampling
        with self._lock, torch.no_grad():
            for nxt in self.net.stream(idx, s.max_new_tokens, temperature=s.temperature, top_k=s.top_k,
                                       top_p=s.top_p, generator=generator, stop_token=stops, cache=cache):
                step = []
                for row, token in enumerate(nxt.squeeze(1).tolist()):
                    done[row] = done[row] or token in stops
                    step.append(None if done[row] else token)
                if all(done):
                    return
                yield step
