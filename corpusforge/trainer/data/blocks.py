"""Token blocks for language-model training: from a mixed corpus through its weighted reader
(`corpusforge.trainer.data.shards.WeightedReader`: proportions, shuffling, epochs and rank splits are the reader's; the trainer
never mixes sources itself) or, character level, from plain text files (`chars.TextBlocks`, the same interface).

A block is `block_size + 1` token ids: inputs are `block[:-1]`, targets `block[1:]`.
"""

from __future__ import annotations

import numpy as np
import torch

from corpusforge.trainer.loop import TrainError


def open_reader(*, corpus: str = "", text: list[str] | None = None, block_size: int, split: str, seed: int,
                rank: int = 0, world_size: int = 1, sets: list[str] | None = None):
    """This rank's endless block stream of the `split` of a corpus folder, or of plain `text` files."""
    from corpusforge.trainer.data import shards
    from corpusforge.trainer.data.chars import TextBlocks

    try:
        if text:
            return TextBlocks(text, block_size, split=split, seed=seed, rank=rank, world_size=world_size, sets=sets)
        return shards.WeightedReader(corpus, block_size, split=split, seed=seed, rank=rank, world_size=world_size,
                                     sets=sets)
    except (OSError, ValueError) as err:  # no manifest, a bad set name, a missing text file
        raise TrainError(f"cannot read the {split} split of {corpus or text}: {err}") from None


def tokenizer_of(reader):
    """The tokenizer the reader's blocks were encoded with (saved beside a run's checkpoint for `generate`)."""
    if hasattr(reader, "tokenizer"):  # character level: built from the text's alphabet
        return reader.tokenizer
    from corpusforge.trainer.data import shards

    return shards.load_tokenizer(reader.corpus_dir)


def stack(blocks, count: int) -> torch.Tensor:
    """The next `count` blocks of an iterator as one (count, block_size + 1) int64 tensor."""
    return torch.from_numpy(np.stack([next(blocks) for _ in range(count)]).astype(np.int64))


def validation_blocks(reader_for_set, sets: list[str], count: int, rank: int, world_size: int, block_size: int
                      ) -> dict[str, torch.Tensor]:
    """For each set, this rank's share of the first `count` blocks of its held-out stream (`reader_for_set(name)`
    opens it): the same blocks at every evaluation, so the curve shows the model changing, not the sample."""
    out = {}
    for name in sets:
        blocks = iter(reader_for_set(name))
        rows = [next(blocks) for _ in range(len(range(rank, count, world_size)))]  # none: more ranks than blocks
        out[name] = torch.from_numpy(np.stack(rows).astype(np.int64) if rows else
                                     np.empty((0, block_size + 1), dtype=np.int64))
    return out


class BlockStream:
    """Endless, resumable epochs over a fixed set of blocks (rows of equally long arrays, e.g. packed
    conversations: ids, targets, document ids): epoch e visits the rows in an order shuffled by (seed, e); rank r of
    `world_size` takes rows r, r + world_size, ... of that endless sequence (disjoint, and together all of it).
    Its position is the count of rows it has yielded."""

    def __init__(self, arrays: tuple[np.ndarray, ...], *, seed: int, rank: int = 0, world_size: int = 1):
        if not arrays or not len(arrays[0]):
            raise ValueError("no blocks to train on")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.arrays, self.seed, self.rank, self.world_size = arrays, seed, rank, world_size
        self.rows = len(arrays[0])
        self._next = 0

    def __iter__(self):
        epoch, order = -1, None
        while True:
            i = self.rank + self._next * self.world_size  # index in the sequence shared by all ranks
            if i // self.rows != epoch:
                epoch = i // self.rows
                order = np.random.default_rng([self.seed, epoch]).permutation(self.rows)
            self._next += 1
            yield tuple(a[order[i % self.rows]] for a in self.arrays)

    def state_dict(self) -> dict:
        return {"next": self._next, "rows": self.rows, "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        wrong = [k for k in ("rows", "rank", "world_size") if state.get(k) != mine[k]]
        if wrong:
            raise ValueError("block stream state is for another stream: " +
                             ", ".join(f"{k} {state.get(k)!r} != {mine[k]!r}" for k in wrong))
        self._next = int(state["next"])
