"""The weighted reader the trainer imports: fixed-length token blocks from a mixed corpus, in the proportions its
manifest gives, deterministic for a seed, resumable, and split across data-parallel ranks.

How the stream is defined (so that any position can be reached without replaying what came before):

* Blocks, not documents, are mixed. Global block g (0, 1, 2, ...) belongs to one set. The sets take turns by a
  smooth weighted round-robin over a period of `PERIOD` blocks in which set s has round(weight_s * PERIOD) slots,
  spread evenly. So in any window of n blocks each set's share of blocks, which is its share of tokens since all
  blocks are equally long, is within about (number of sets)/n of its weight: exact proportions, not a sample.
* Global block g is block k of its set, k being how many earlier slots that set had; k follows from g in closed form.
* A set's token stream is its documents, each followed by <|endoftext|>, epoch after epoch. Epoch e visits the
  shards in an order shuffled by (seed, set, e), within a shard its row groups in a shuffled order, and within a row
  group its documents in a shuffled order; later epochs are thus new orders of the same documents. Block k of a set
  is tokens [k * (block_size + 1), (k + 1) * (block_size + 1)) of its stream.
* Rank r of world_size W yields global blocks r, r + W, r + 2W, ...: no block goes to two ranks, and together the
  ranks yield every block. A reader's position is the count of blocks it has yielded.

Only the row groups the rank needs are decoded (the `tokens` column; the mixer stored token ids, so nothing is
tokenized here), a few at a time per set, so memory does not grow with the corpus.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import xxhash

from corpusforge import runtime
from corpusforge.mix import manifest as manifest_mod

PERIOD = 1 << 14  # schedule slots; a weight is honoured to within 1/(2 * PERIOD)
_STATE_VERSION = 1


def schedule(weights: list[float], period: int = PERIOD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The block schedule for one period: (set of each slot, the slot's index among its set's slots, slots per
    set). Slots per set are the weights apportioned by largest remainder (every positive weight gets at least
    one); the order is a smooth weighted round-robin, which spreads each set's slots evenly over the period."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    ideal = w * period
    slots = np.floor(ideal).astype(np.int64)
    slots[(w > 0) & (slots == 0)] = 1
    by_remainder = sorted(range(len(w)), key=lambda i: (-(ideal[i] - slots[i]), i))
    for i in by_remainder[: max(0, period - int(slots.sum()))]:
        slots[i] += 1
    while slots.sum() > period:  # only when tiny weights were raised to one slot
        slots[int(np.argmax(slots))] -= 1
    current = [0] * len(w)
    owner = np.empty(period, dtype=np.int64)
    nth = np.empty(period, dtype=np.int64)
    taken = [0] * len(w)
    counts = slots.tolist()
    for t in range(period):
        for i, c in enumerate(counts):
            current[i] += c
        i = max(range(len(w)), key=lambda j: (current[j], -j))
        current[i] -= period
        owner[t], nth[t] = i, taken[i]
        taken[i] += 1
    return owner, nth, slots


def _set_salt(name: str) -> int:
    """A number for the set's shuffles that depends on its name only, so a set reads the same whether or not the
    reader was restricted to it (`sets=[name]`)."""
    return xxhash.xxh32_intdigest(name.encode())


class _SetStream:
    """Random access to one set's endless token stream (see the module doc)."""

    def __init__(self, corpus_dir: Path, name: str, shards: list[dict[str, Any]], eot: int, seed: int):
        self.name = name
        self.paths = [corpus_dir / s["path"] for s in shards]
        self.lengths = np.array([s["tokens"] + s["rows"] for s in shards], dtype=np.int64)
        self.epoch_tokens = int(self.lengths.sum())
        self.eot = eot
        self.seed = seed
        self.salt = _set_salt(name)
        self._epochs: collections.OrderedDict[int, tuple[np.ndarray, np.ndarray]] = collections.OrderedDict()
        self._layouts: dict[int, np.ndarray] = {}  # shard -> tokens (with end-of-text) per row group
        self._orders: collections.OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = \
            collections.OrderedDict()
        self._row_groups: collections.OrderedDict[tuple, np.ndarray] = collections.OrderedDict()
        self._files: collections.OrderedDict[int, pq.ParquetFile] = collections.OrderedDict()

    def read(self, start: int, n: int) -> np.ndarray:
        """Tokens [start, start + n) of the stream."""
        out = np.empty(n, dtype=np.int64)
        filled = 0
        while filled < n:
            epoch, pos = divmod(start + filled, self.epoch_tokens)
            order, ends = self._epoch(epoch)
            i = int(np.searchsorted(ends, pos, side="right"))
            shard, pos = int(order[i]), pos - int(ends[i - 1] if i else 0)
            rg_order, rg_ends = self._shard_order(epoch, shard)
            j = int(np.searchsorted(rg_ends, pos, side="right"))
            group, pos = int(rg_order[j]), pos - int(rg_ends[j - 1] if j else 0)
            tokens = self._row_group(epoch, shard, group)
            take = min(n - filled, len(tokens) - pos)
            out[filled:filled + take] = tokens[pos:pos + take]
            filled += take
        return out

    def _rng(self, *parts: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.salt, *parts])

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Shard order of an epoch and the stream position where each of them ends."""
        if epoch not in self._epochs:
            order = self._rng(epoch).permutation(len(self.paths))
            self._epochs[epoch] = (order, np.cumsum(self.lengths[order]))
            while len(self._epochs) > 2:
                self._epochs.popitem(last=False)
        return self._epochs[epoch]

    def _shard_order(self, epoch: int, shard: int) -> tuple[np.ndarray, np.ndarray]:
        """Row-group order of a shard in an epoch and the position (within the shard) where each ends."""
        if shard not in self._layouts:
            meta = self._file(shard).metadata
            n_tokens = self._file(shard).read(columns=["n_tokens"]).column("n_tokens").to_numpy().astype(np.int64)
            bounds = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
            self._layouts[shard] = np.array([n_tokens[a:b].sum() + (b - a) for a, b in zip(bounds[:-1], bounds[1:])],
                                            dtype=np.int64)
        key = (epoch, shard)
        if key not in self._orders:
            lengths = self._layouts[shard]
            order = self._rng(epoch, shard).permutation(len(lengths))
            self._orders[key] = (order, np.cumsum(lengths[order]))
            while len(self._orders) > 16:
                self._orders.popitem(last=False)
        return self._orders[key]

    def _row_group(self, epoch: int, shard: int, group: int) -> np.ndarray:
        """The stream of one row group in an epoch: its documents in shuffled order, each ending in end-of-text."""
        key = (epoch, shard, group)
        if key in self._row_groups:
            self._row_groups.move_to_end(key)
            return self._row_groups[key]
        column = self._file(shard).read_row_group(group, columns=["tokens"]).column("tokens").combine_chunks()
        offsets = column.offsets.to_numpy().astype(np.int64)
        values = np.append(column.values.to_numpy(), np.uint32(self.eot))
        order = self._rng(epoch, shard, group).permutation(len(offsets) - 1)
        spans = (offsets[1:] - offsets[:-1])[order] + 1  # each document plus its end-of-text
        ends = np.cumsum(spans)
        source = np.repeat(offsets[:-1][order] - (ends - spans), spans) + np.arange(int(ends[-1]) if len(ends) else 0)
        tokens = values[np.minimum(source, len(values) - 1)]
        tokens[ends - 1] = self.eot
        self._row_groups[key] = tokens
        while len(self._row_groups) > 4:
            self._row_groups.popitem(last=False)
        return tokens

    def _file(self, shard: int) -> pq.ParquetFile:
        if shard not in self._files:
            self._files[shard] = pq.ParquetFile(self.paths[shard])
            while len(self._files) > 8:
                self._files.popitem(last=False)
        self._files.move_to_end(shard)
        return self._files[shard]


class WeightedReader:
    """Endless token blocks from the corpus in `corpus_dir` (see the module doc for the exact stream).

    Each item is a numpy int64 array of `block_size + 1` tokens (x = a[:-1], y = a[1:]). `split="val"` reads the
    held-out documents. `sets` restricts the stream to those sets, their weights renormalized (for per-source
    validation loss). `rank`/`world_size` give this data-parallel rank its disjoint part of the stream.
    """

    def __init__(self, corpus_dir, block_size: int, *, split: str = "train", seed: int = 0, rank: int = 0,
                 world_size: int = 1, sets: list[str] | None = None):
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        self.corpus_dir = Path(corpus_dir)
        manifest = manifest_mod.load(self.corpus_dir)
        self.vocab_size: int = manifest["tokenizer"]["vocab_size"]
        self.eot_id: int = manifest["tokenizer"]["eot_id"]
        self.block_size, self.split, self.seed, self.rank, self.world_size = block_size, split, seed, rank, world_size
        by_name = {s["name"]: s for s in manifest["sets"]}
        if sets is not None:
            unknown = [n for n in sets if n not in by_name]
            if unknown:
                raise ValueError(f"unknown set(s) {unknown}; the corpus has {list(by_name)}")
            empty = [n for n in sets if not by_name[n][split]["documents"]]
            if empty:
                raise ValueError(f"set(s) {empty} have no {split} documents in {self.corpus_dir}")
        chosen = [s for s in manifest["sets"] if (sets is None or s["name"] in sets)
                  and s["weight"] > 0 and s[split]["documents"]]
        if not chosen:
            raise ValueError(f"no set with weight > 0 has {split} documents in {self.corpus_dir}")
        self.sets: list[str] = [s["name"] for s in chosen]
        total = sum(s["weight"] for s in chosen)
        self.weights: dict[str, float] = {s["name"]: s["weight"] / total for s in chosen}
        self._owner, self._nth, self._slots = schedule([s["weight"] for s in chosen])
        self._streams = [_SetStream(self.corpus_dir, s["name"], s[split]["shards"], self.eot_id, seed)
                         for s in chosen]
        self._yielded = 0

    def blocks(self) -> Iterator[tuple[str, np.ndarray]]:
        """Endless (set name, block) pairs from the current position; the position advances with each."""
        span = self.block_size + 1
        while True:
            g = self.rank + self._yielded * self.world_size
            period, slot = divmod(g, PERIOD)
            s = int(self._owner[slot])
            k = period * int(self._slots[s]) + int(self._nth[slot])
            block = self._streams[s].read(k * span, span)
            self._yielded += 1
            yield self.sets[s], block

    def __iter__(self) -> Iterator[np.ndarray]:
        return (block for _, block in self.blocks())

    def state_dict(self) -> dict[str, Any]:
        """The position (blocks yielded so far) and the settings it is valid for; JSON-serializable."""
        return {"version": _STATE_VERSION, "blocks_yielded": self._yielded, "block_size": self.block_size,
                "split": self.split, "seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                "sets": list(self.sets)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue right after the last block yielded by the reader `state` was taken from. The reader must have
        the same settings; a mismatch is refused rather than silently reading another stream."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"reader state version {state.get('version')!r}, expected {_STATE_VERSION}")
        mine = self.state_dict()
        wrong = [k for k in ("block_size", "split", "seed", "rank", "world_size", "sets") if state.get(k) != mine[k]]
        if wrong:
            raise ValueError("reader state is for another stream: " +
                             ", ".join(f"{k} {state.get(k)!r} != {mine[k]!r}" for k in wrong))
        self._yielded = int(state["blocks_yielded"])


def load_tokenizer(corpus_dir: str | os.PathLike):
    """The tokenizer the corpus was encoded with (`tokenizers.Tokenizer`), checked against the manifest's sha256.
    Special-token strings in text are recognized as special tokens, as chat templates need."""
    from corpusforge.mix import tokenizer as tok_mod

    corpus_dir = Path(corpus_dir)
    entry = manifest_mod.load(corpus_dir)["tokenizer"]
    path = corpus_dir / entry["path"]
    if runtime.file_sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} is not the tokenizer this corpus was encoded with (sha256 differs from manifest)")
    return tok_mod.load(path, specials_in_text=True)
