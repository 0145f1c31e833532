"""Where the app's answers come from: a trained run sampled through the chat template, at temperature 1 by default
(InstructGPT sampled the answers labelers ranked at T = 1).

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
        from tokenizers import Tokenizer

        from corpusforge.trainer.generate import load_model

        self.run_dir = Path(run_dir)
        self.model_name = str(self.run_dir.resolve())
        self.sampling = sampling or Sampling()
        self.sampling.validate()
        self.device = device
        self.net, meta = load_model(run_dir, device)
        self.tokenizer = Tokenizer.from_file(str(self.run_dir / "tokenizer.json"))
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
        """Per step, the next token of each of `k` rows (None once a row has stopped), up to max_new_tokens."""
        prompt = self.prompt_ids(messages)
        budget = self.net.config.block_size - 1
        prompt = prompt[-budget:]  # the model sees at most block_size tokens: keep the end of a long conversation
        idx = torch.tensor([prompt] * k, dtype=torch.long, device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        done = [False] * k
        s = self.sampling
        with self._lock, torch.no_grad():
            from corpusforge.trainer.model import sample_next

            for _ in range(s.max_new_tokens):
                logits, _ = self.net(idx[:, -self.net.config.block_size:])
                nxt = sample_next(logits[:, -1, :].float(), temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                                  generator=generator)
                idx = torch.cat([idx, nxt], dim=1)
                step = []
                for row, token in enumerate(nxt.squeeze(1).tolist()):
                    if done[row] or token in (self.end_id, self.eot_id):
                        done[row] = True
                        step.append(None)
                    else:
                        step.append(token)
                if all(done):
                    return
                yield step

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The conversation rendered for generation: each turn as its role token, its text and `<|end|>`, then
        `<|assistant|>`. Text is encoded as plain text, so a special token's spelling in it is not a turn."""
        ids = []
        for m in messages:
            ids.append(self.tokenizer.token_to_id(f"<|{m['role']}|>"))
            ids += self.tokenizer.encode(m["content"], add_special_tokens=False).ids
            ids.append(self.end_id)
        return ids + [self.tokenizer.token_to_id("<|assistant|>")]
