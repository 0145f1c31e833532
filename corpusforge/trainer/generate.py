"""Sample from a trained run: load its checkpoint's weights and its tokenizer, continue a prompt (`generate_text`),
or chat with it turn by turn, streaming each reply as it is sampled (`ChatSession`). Both sample with the model's
key/value cache; a chat keeps the cache between turns, so a turn feeds only what is new."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, TextIO

import torch

from corpusforge.errors import UserError
from corpusforge.options import narrow, option, setting
from corpusforge.trainer import checkpoint
from corpusforge.trainer.data import chat
from corpusforge.trainer.model import GPT, GPTConfig, KVCache


@dataclasses.dataclass
class SamplingConfig:
    """How tokens are drawn: `temperature` 0 is greedy; `top_k` keeps the k likeliest tokens, `top_p` the smallest
    set whose probability reaches p; the same `seed` gives the same samples."""

    max_new_tokens: int = dataclasses.field(default=200, metadata=option("longest reply in tokens"))
    temperature: float = dataclasses.field(default=0.8, metadata=option("0 is greedy"))
    top_k: int | None = dataclasses.field(default=200, metadata=option("sample from the k likeliest tokens"))
    top_p: float | None = dataclasses.field(default=None, metadata=option("nucleus sampling, e.g. 0.95"))
    seed: int = dataclasses.field(default=1337, metadata=option("the same seed gives the same samples"))

    def validate(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise UserError(f"--temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}")


def load_model(run_dir: str | os.PathLike, device: str = "cpu", which: str | None = None) -> tuple[GPT, dict]:
    """A run's model (verified), in eval mode on `device`, and its metadata: `which` is "best" (the weights at the
    lowest validation loss), "last" (the latest checkpoint), or None for best when the run has one, else last."""
    if which is None:
        which = "best" if checkpoint.path_in(run_dir, "best").exists() else "last"
    meta, weights = checkpoint.load_weights(checkpoint.path_in(run_dir, which))
    net = GPT(GPTConfig(**meta["model_config"]))
    net.load_state_dict(sampling_weights(weights))
    return net.to(_device(device)).eval(), meta


def choose_checkpoint(run_dir: str | os.PathLike) -> tuple[str | None, str | None]:
    """`generate`'s default weights, and why when it is not the best ones: the last checkpoint when the lowest
    held-out loss came in the first half of the run (the model then fit its training text more than new text, as
    `make train` on the small sample corpus does: its best weights write little more than frequent tokens, its
    last ones write in the sample's style); else None (`load_model`'s default: best when the run has it)."""
    try:
        summary = json.loads((Path(run_dir) / "_summary.json").read_text(encoding="utf-8"))
        best, last = int(summary["best_step"]), int(summary["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None
    if not checkpoint.path_in(run_dir, "last").exists() or 2 * best >= last:
        return None, None
    return "last", (f"sampling the last weights (step {last:,}): the lowest held-out loss came at step {best:,}, "
                    "after which the model fit its training text more than new text; --checkpoint best samples "
                    "those")


def sampling_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights of the model that samples: a PPO run keeps its value model beside its policy (`policy.*`)."""
    if any(k.startswith("policy.") for k in weights):
        return {k.removeprefix("policy."): v for k, v in weights.items() if k.startswith("policy.")}
    return weights


def load_run(run_dir: str | os.PathLike, device: str = "cpu", which: str | None = None):
    """(model, metadata, tokenizer) of a run folder; UserError when it is not one or `device` is not here. The
    tokenizer encodes special-token spellings in text as plain text."""
    from corpusforge.mix.tokenizer import load as load_tokenizer

    run_dir = Path(run_dir)
    net, meta = load_model(run_dir, device, which)
    if not (run_dir / "tokenizer.json").is_file():
        raise UserError(f"{run_dir}: no tokenizer.json beside the checkpoint; a training run folder (the --out of "
                        f"`corpusforge train`) has one")
    return net, meta, load_tokenizer(run_dir / "tokenizer.json")


def _device(device: str) -> torch.device:
    """`device` as a torch.device; UserError when it names a CUDA device this machine does not have."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise UserError(f"--device {device!r}: {err}") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"--device {device}: no such CUDA device here ({torch.cuda.device_count()} visible)")
    return dev


def generate_text(run_dir: str | os.PathLike, prompt: str, *, max_new_tokens: int = 200, temperature: float = 0.8,
                  top_k: int | None = 200, top_p: float | None = None, num_samples: int = 1, seed: int = 1337,
                  device: str = "cpu", which: str | None = None) -> list[str]:
    """`num_samples` continuations of `prompt` (the prompt included), each stopping at end-of-text. The same seed
    gives the same samples. An empty prompt starts from end-of-text, i.e. a new document. `which` as in
    `load_model`."""
    sampling = SamplingConfig(max_new_tokens, temperature, top_k, top_p, seed)
    sampling.validate()
    if num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {num_samples}")
    net, meta, tokenizer = load_run(run_dir, device, which)
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


class ChatSession:
    """A multi-turn chat with a run's model: `reply(text)` streams the assistant's answer as text pieces and keeps
    both turns. The prompt is the chat template's rendering of the whole conversation (`chat.render`), so it is
    what SFT trained on; the key/value cache carries over between turns, so a turn feeds only its new tokens. When
    the conversation outgrows the context, the oldest exchanges are left out of the prompt (a system turn stays)."""

    def __init__(self, run_dir: str | os.PathLike, *, system: str | None = None,
                 sampling: SamplingConfig | None = None, device: str = "cpu", which: str | None = None):
        self.run_dir, self.sampling = run_dir, sampling or SamplingConfig()
        self.sampling.validate()
        self.net, self.meta, self.tokenizer = load_run(run_dir, device, which)
        special = chat.special_ids(self.tokenizer)
        self.stops = [special[chat.END], special[chat.EOT]]
        self.messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        self.cache = KVCache(self.net.config, 1, self.net.wte.weight.device, self.net.wte.weight.dtype)
        self.generator = torch.Generator(device=self.net.wte.weight.device).manual_seed(self.sampling.seed)

    def prompt(self) -> list[int]:
        """The ids of the conversation so far, ending with `<|assistant|>`, without the oldest exchanges when the
        whole would leave less than half the context (or max_new_tokens, if fewer) for the reply."""
        limit = self.net.config.block_size - min(self.sampling.max_new_tokens, self.net.config.block_size // 2)
        keep = self.messages
        ids, _ = chat.render(keep, self.tokenizer, for_generation=True)
        while len(ids) > limit and sum(m["role"] != "system" for m in keep) > 1:
            first = next(i for i, m in enumerate(keep) if m["role"] != "system")
            keep = keep[:first] + keep[first + 1:]
            ids, _ = chat.render(keep, self.tokenizer, for_generation=True)
        return ids

    def reply(self, text: str) -> Iterator[str]:
        """Add a user turn; yield the assistant's reply in pieces as it is sampled (a piece ends on a whole
        character), stopping at `<|end|>`, `<|endoftext|>` or max_new_tokens; the reply joins the conversation."""
        self.messages.append({"role": "user", "content": text})
        idx = torch.tensor([self.prompt()], dtype=torch.long, device=self.net.wte.weight.device)
        s = self.sampling
        new: list[int] = []
        shown = ""
        for token in self.net.stream(idx, s.max_new_tokens, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                                     generator=self.generator, stop_token=self.stops, cache=self.cache):
            if token.item() in self.stops:
                break
            new.append(token.item())
            text_so_far = self.tokenizer.decode(new)
            if not text_so_far.endswith("\ufffd"):  # hold back a character whose bytes are not all sampled yet
                yield text_so_far[len(shown):]
                shown = text_so_far
        answer = self.tokenizer.decode(new)
        if answer != shown:
            yield answer[len(shown):]
        self.messages.append({"role": "assistant", "content": answer})


def talk(session: ChatSession, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> None:
    """`corpusforge chat`: user turns from `stdin` and replies streamed to `stdout` until end of input; at a
    terminal with prompts, otherwise each input line is a turn and each reply one output line."""
    interactive = stdin.isatty()
    if interactive:
        print(f"chatting with {session.run_dir} (Ctrl-D to end)", file=stderr)
    while True:
        try:
            line = input("you> ") if interactive else stdin.readline()
        except (EOFError, KeyboardInterrupt):
            print(file=stderr)
            return
        if not interactive and not line:
            return
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if interactive:
            print("assistant> ", end="", flush=True, file=stdout)
        for piece in session.reply(text):
            print(piece, end="", flush=True, file=stdout)
        print(flush=True, file=stdout)


_RUN_DIR = option("a trained run's folder", positional=True)


@dataclasses.dataclass(kw_only=True)
class GenerateCommand(SamplingConfig):
    """`corpusforge generate RUN_DIR`: continue `prompt` `num_samples` times."""

    run_dir: str = dataclasses.field(metadata=_RUN_DIR)
    prompt: str = setting("", "text to continue (default: start a new document)")
    num_samples: int = setting(1, "samples to draw")
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    checkpoint: Literal["best", "last"] | None = setting(None, (
        "best: the weights at the lowest validation loss; last: the latest checkpoint (default: best when the run "
        "has them, unless they come from the first half of the run: then last)"))


def generate_command(command: GenerateCommand) -> None:
    """`corpusforge generate`: the samples on stdout, separated by a line of dashes."""
    which, why = (command.checkpoint, None) if command.checkpoint else choose_checkpoint(command.run_dir)
    if why:
        print(why, file=sys.stderr)
    texts = generate_text(command.run_dir, command.prompt, **dataclasses.asdict(narrow(command, SamplingConfig)),
                          num_samples=command.num_samples, device=command.device, which=which)
    print("\n---------------\n".join(texts))


@dataclasses.dataclass(kw_only=True)
class ChatCommand(SamplingConfig):
    """`corpusforge chat RUN_DIR`: a conversation on stdin and stdout, opened by `system` when given."""

    run_dir: str = dataclasses.field(metadata=_RUN_DIR)
    system: str | None = setting(None, "a system turn that starts the conversation")
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    checkpoint: Literal["best", "last"] | None = setting(None, (
        "best: the weights at the lowest validation loss (the default when the run has them); last: the latest "
        "checkpoint"))


def chat_command(command: ChatCommand) -> None:
    """`corpusforge chat`: `talk` with the run on stdin and stdout."""
    session = ChatSession(command.run_dir, system=command.system, sampling=narrow(command, SamplingConfig),
                          device=command.device, which=command.checkpoint)
    talk(session, sys.stdin, sys.stdout, sys.stderr)
