"""Character-level training on plain text files: a tokenizer with one token per character, and a block reader with
the interface of `corpusforge.trainer.data.shards.WeightedReader`, so the trainer reads it exactly as it reads a corpus.

This is nanoGPT's `shakespeare_char` setup (the benchmark anchor) and the quick way to train on a few text files:
the text is held in memory, so it is meant for files of up to a few hundred MB. Corpora go through the weighted
reader instead.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# The reserved tokens come first, in the corpus tokenizer's order, so a character model is driven like any other
# (end-of-text between files; the chat template's tokens for SFT and chat).
from corpusforge.trainer.data.chat import SPECIAL_TOKENS

SET_NAME = "text"
_CHUNK = 4096  # block offsets are drawn this many at a time, from a generator seeded by (seed, split, chunk)


def read_text(path: str | Path) -> str:
    """A UTF-8 text file (`.gz` is decompressed); undecodable bytes become U+FFFD rather than stopping training."""
    path = Path(path)
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode("utf-8", errors="replace")


def char_tokenizer(chars: list[str]):
    """A `tokenizers.Tokenizer` mapping each of `chars` to one id after the special tokens (saved with a run so
    `corpusforge generate` encodes and decodes the same way)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *chars])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS[1]))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


class TextBlocks:
    """Random windows of `block_size + 1` character ids from text files, as an infinite, resumable stream.

    The vocabulary is every character in the files (sorted, after the special tokens). Each file's first
    `1 - val_fraction` is the train split, the rest the val split; files are joined with `<|endoftext|>`. Window i of
    the stream starts at an offset drawn from a generator seeded by (seed, split, i // 4096), so the stream depends
    only on the seed; rank r of `world_size` takes windows r, r + world_size, ... (disjoint, and together the whole
    stream, as the corpus reader's ranks are).
    """

    def __init__(self, paths: list[str | Path] | str | Path, block_size: int, *, split: str = "train", seed: int = 0,
                 rank: int = 0, world_size: int = 1, sets: list[str] | None = None, val_fraction: float = 0.1):
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not paths:
            raise ValueError("no text files given")
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if sets is not None and list(sets) != [SET_NAME]:
            raise ValueError(f"a text reader has one set, {SET_NAME!r}; got {sets}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        codes = [np.frombuffer(read_text(p).encode("utf-32-le"), dtype=np.uint32) for p in paths]
        alphabet = np.unique(np.concatenate(codes))
        self.chars = [chr(c) for c in alphabet]
        self.vocab_size = len(SPECIAL_TOKENS) + len(self.chars)
        self.eot_id = 0
        self.sets = [SET_NAME]
        parts = []
        for c in codes:
            ids = np.searchsorted(alphabet, c).astype(np.int64) + len(SPECIAL_TOKENS)
            cut = int(len(ids) * (1 - val_fraction))
            parts += [ids[:cut] if split == "train" else ids[cut:], np.array([self.eot_id], dtype=np.int64)]
        self.data = np.concatenate(parts[:-1])
        if len(self.data) <= block_size + 1:
            raise ValueError(f"the {split} split has {len(self.data)} characters; need more than block_size + 1 "
                             f"= {block_size + 1}")
        self.block_size = block_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._split_key = 0 if split == "train" else 1
        self._next = 0  # windows this rank has yielded

    @property
    def tokenizer(self):
        return char_tokenizer(self.chars)

    def __iter__(self):
        chunk_index, offsets = -1, None
        while True:
            i = self.rank + self._next * self.world_size  # index in the stream shared by all ranks
            if i // _CHUNK != chunk_index:
                chunk_index = i // _CHUNK
                rng = np.random.default_rng([self.seed, self._split_key, chunk_index])
                offsets = rng.integers(0, len(self.data) - self.block_size, size=_CHUNK)
            start = int(offsets[i % _CHUNK])
            self._next += 1
            yield self.data[start:start + self.block_size + 1]

    def state_dict(self) -> dict:
        return {"next": self._next, "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if (state.get("rank"), state.get("world_size")) != (self.rank, self.world_size):
            raise ValueError(f"reader state is for rank {state.get('rank')} of {state.get('world_size')}, "
                             f"not rank {self.rank} of {self.world_size}")
        self._next = int(state["next"])
