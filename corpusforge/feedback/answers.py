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

from corpusforge.trainer.data import chat
from corpusforge.trainer.generate import SamplingConfig, load_run
from corpusforge.trainer.model import KVCache


class RunAnswerer:
    """A run's model and tokenizer (loaded once), answering conversations. Calls are serialized: one model, one
    caller at a time (the web server runs them in worker threads)."""

    def __init__(self, run_dir: str | os.PathLike, sampling: SamplingConfig, device: str = "cpu"):
        sampling.validate()
        self.sampling = sampling
        self.model_name = str(Path(run_dir).resolve())
        self.net, _, self.tokenizer = load_run(run_dir, device)
        special = chat.special_ids(self.tokenizer)
        self.stops = (special[chat.END], special[chat.EOT])
        self.device = self.net.wte.weight.device
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
        text = self.tokenizer.decode(ids)
        if text != shown:
            yield text[len(shown):]

    def _tokens(self, messages: list[dict[str, str]], k: int, seed: int) -> Iterator[list[int | None]]:
        """Per step, the next token of each of `k` rows (None once a row has stopped), up to max_new_tokens."""
        prompt, _ = chat.render(messages, self.tokenizer, for_generation=True)
        prompt = prompt[-(self.net.config.block_size - 1):]  # keep the end of a conversation longer than the model
        idx = torch.tensor([prompt] * k, dtype=torch.long, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        cache = KVCache(self.net.config, k, self.device, self.net.wte.weight.dtype)
        done = [False] * k
        s = self.sampling
        with self._lock, torch.no_grad():
            for nxt in self.net.stream(idx, s.max_new_tokens, temperature=s.temperature, top_k=s.top_k,
                                       top_p=s.top_p, generator=generator, stop_token=self.stops, cache=cache):
                step = []
                for row, token in enumerate(nxt.squeeze(1).tolist()):
                    done[row] = done[row] or token in self.stops
                    step.append(None if done[row] else token)
                if all(done):
                    return
                yield step
