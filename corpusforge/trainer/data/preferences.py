"""Preference data for the reward model: comparisons (K ranked answers to one conversation), ratings (a thumbs up
or down on one reply) and demonstrations, read from a feedback store or its Parquet export, rendered with the chat
template.

One comparison is one batch element, as InstructGPT trained its reward model: its K answers are K sequences (the
conversation, then the answer and the `<|end|>` that closes it), and the loss sees all its untied pairs together.
Prompts are split into train and held-out by a hash of the conversation, so every comparison of a prompt lands on
the same side and the held-out accuracy is measured on prompts the model never saw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from corpusforge.errors import UserError
from corpusforge.trainer.data.chat import read_conversations, render


@dataclasses.dataclass
class Element:
    """One batch element: `sequences` (token ids, each ending at the answer's `<|end|>`, where the reward is read)
    with `ranks` (a comparison; 0 best, equal = tie) or `rating` (+1 / -1, one sequence)."""

    sequences: list[list[int]]
    ranks: list[int] | None = None
    rating: int | None = None

    def pairs(self) -> list[tuple[int, int]]:
        """(better, worse) index pairs of a comparison; ties give none."""
        if self.ranks is None:
            return []
        k = len(self.ranks)
        return [(i, j) for i in range(k) for j in range(k) if self.ranks[i] < self.ranks[j]]


@dataclasses.dataclass
class Feedback:
    """What the sources hold, as records: comparisons and ratings (dicts of comparison/rating.schema.json) and
    demonstrations (conversations)."""

    comparisons: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    ratings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    demonstrations: list[list[dict[str, str]]] = dataclasses.field(default_factory=list)


def read_feedback(sources: list[str | os.PathLike]) -> Feedback:
    """Every comparison, rating and demonstration of `sources`: a feedback store (a .sqlite file or a postgresql://
    URL) or a folder written by `corpusforge feedback export` (comparisons.parquet, ratings.parquet,
    conversations.parquet; any may be missing)."""
    out = Feedback()
    for source in sources:
        text = str(source)
        if text.startswith(("postgresql://", "postgres://")) or text.endswith(".sqlite"):
            from corpusforge.feedback.store import Store

            if "://" not in text and not Path(text).is_file():
                raise UserError(f"--feedback {text}: no such file")
            store = Store(text)
            try:
                out.comparisons += list(store.rows("comparison"))
                out.ratings += list(store.rows("rating"))
                out.demonstrations += [row["messages"] for row in store.rows("demonstration")]
            finally:
                store.close()
        elif Path(text).is_dir():
            import pyarrow.parquet as pq

            folder = Path(text)
            if not any((folder / f).exists() for f in ("comparisons.parquet", "ratings.parquet")):
                raise UserError(f"--feedback {folder}: no comparisons.parquet or ratings.parquet in it")
            for name, into in (("comparisons", out.comparisons), ("ratings", out.ratings)):
                if (folder / f"{name}.parquet").exists():
                    into += pq.read_table(folder / f"{name}.parquet").to_pylist()
            if (folder / "conversations.parquet").exists():
                out.demonstrations += [c["messages"] for c in read_conversations([folder / "conversations.parquet"])]
        else:
            raise UserError(f"--feedback {text}: a .sqlite store, a postgresql:// URL or an export folder")
    return out


def prompt_is_held_out(context: list[dict[str, str]], fraction: float, seed: int) -> bool:
    """Whether a conversation's comparisons are held out: a stable hash of (seed, conversation) below `fraction`."""
    digest = hashlib.sha256(json.dumps([seed, context], ensure_ascii=False).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def sequence(context: list[dict[str, str]], answer: str, tokenizer, block_size: int) -> list[int]:
    """The conversation and the answer rendered by the chat template, ending with the answer's `<|end|>`; a
    sequence longer than `block_size` keeps its end (the answer, and as much of the conversation as fits)."""
    ids, _ = render([*context, {"role": "assistant", "content": answer}], tokenizer)
    return ids[-block_size:]


def elements(feedback: Feedback, tokenizer, block_size: int, *, held_out: float, seed: int
             ) -> tuple[list[Element], list[Element], dict[str, int]]:
    """(train, held-out) batch elements and counts: comparisons without an untied pair are dropped (all ties
    teach nothing), as are answers flagged unusable; ratings join the train side of their prompt's split."""
    train: list[Element] = []
    val: list[Element] = []
    counts = {"comparisons": 0, "all_tied": 0, "ratings": 0, "pairs_train": 0, "pairs_held_out": 0}
    for c in feedback.comparisons:
        keep = [i for i, bad in enumerate(c["unusable"]) if not bad]
        element = Element([sequence(c["context"], c["answers"][i], tokenizer, block_size) for i in keep],
                          ranks=[c["ranking"][i] for i in keep])
        if not element.pairs():
            counts["all_tied"] += 1
            continue
        counts["comparisons"] += 1
        side = prompt_is_held_out(c["context"], held_out, seed)
        (val if side else train).append(element)
        counts["pairs_held_out" if side else "pairs_train"] += len(element.pairs())
    for r in feedback.ratings:
        if prompt_is_held_out(r["context"], held_out, seed):
            continue
        train.append(Element([sequence(r["context"], r["answer"], tokenizer, block_size)], rating=r["rating"]))
        counts["ratings"] += 1
    return train, val, counts


def demonstration_sequences(feedback: Feedback, tokenizer, block_size: int) -> Iterator[list[int]]:
    """Each demonstration rendered up to the end of its last assistant turn (where its reward is read)."""
    for messages in feedback.demonstrations:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        yield sequence(messages[:last], messages[last]["content"], tokenizer, block_size)
