"""The weighted reader (corpusforge.trainer.data.shards), against the contract the trainer builds on: token shares match the
weights in every long window and the tokens really come from the set, same seed same stream, exact resume, ranks
disjoint and complete, later epochs reshuffled, validation split and per-set streams, the corpus's tokenizer."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest

from corpusforge.trainer.data import shards
from corpusforge.mix import manifest

from mixdata import read_corpus

pytestmark = pytest.mark.shared_data

BLOCK = 64


def take(reader, n):
    return list(itertools.islice(reader, n))


def documents_of(corpus, split="train"):
    """Each set's documents as token-id byte strings joined by a separator that no token sequence contains."""
    rows = read_corpus(corpus, ["set", "tokens"], split=split).to_pylist()
    out = {}
    for row in rows:
        out.setdefault(row["set"], []).append(np.asarray(row["tokens"], dtype=np.int64).tobytes())
    return {name: b"|" + b"||".join(docs) + b"|" for name, docs in out.items()}


def pieces(block, eot):
    """The runs of document tokens in a block (split at end-of-text)."""
    runs = (run[run != eot] for run in np.split(block, np.flatnonzero(block == eot)))
    return [run for run in runs if len(run)]


def test_token_shares_match_weights_in_every_long_window(corpus):
    reader = shards.WeightedReader(corpus, BLOCK, seed=3)
    assert reader.sets == ["commoncrawl", "webtext2", "books1", "books2", "wikipedia"]
    assert (reader.vocab_size, reader.eot_id) == (4096, 0)
    weights = {s["name"]: s["weight"] for s in manifest.load(corpus)["sets"]}
    drawn = list(itertools.islice(reader.blocks(), 30_000))
    assert all(len(b) == BLOCK + 1 and b.dtype == np.int64 for _, b in drawn[:100])
    names = np.array([name for name, _ in drawn])
    window = 2_000  # 128,000 tokens
    for start in range(0, len(drawn) - window + 1, 1_000):
        counts = Counter(names[start:start + window].tolist())
        for name, weight in weights.items():
            assert abs(counts[name] / window - weight) < 0.01, (start, name)
    # Each block's tokens are text of the set it is counted for: every document run is inside one of its documents.
    haystack = documents_of(corpus)
    for name, block in drawn[::97]:
        for run in pieces(block, reader.eot_id):
            assert run.tobytes() in haystack[name]


def test_same_seed_same_stream_other_seed_another(corpus):
    a = take(shards.WeightedReader(corpus, BLOCK, seed=5), 400)
    b = take(shards.WeightedReader(corpus, BLOCK, seed=5), 400)
    c = take(shards.WeightedReader(corpus, BLOCK, seed=6), 400)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sum(np.array_equal(x, y) for x, y in zip(a, c)) < 40


def test_resume_mid_stream_equals_uninterrupted(corpus):
    whole = take(shards.WeightedReader(corpus, BLOCK, seed=1), 3_000)
    first = shards.WeightedReader(corpus, BLOCK, seed=1)
    head = take(first, 1_777)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = shards.WeightedReader(corpus, BLOCK, seed=1)
    resumed.load_state_dict(state)
    tail = take(resumed, 3_000 - 1_777)
    assert all(np.array_equal(x, y) for x, y in zip(head + tail, whole))
    with pytest.raises(ValueError, match="block_size"):
        shards.WeightedReader(corpus, BLOCK * 2, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        shards.WeightedReader(corpus, BLOCK, seed=2).load_state_dict(state)


def test_ranks_disjoint_and_together_complete(corpus):
    world = 3
    single = take(shards.WeightedReader(corpus, BLOCK, seed=4), 900)
    per_rank = [take(shards.WeightedReader(corpus, BLOCK, seed=4, rank=r, world_size=world), 300)
                for r in range(world)]
    # Rank r holds global blocks r, r + 3, r + 6, ...: together exactly the single-process stream, no block twice.
    for g, block in enumerate(single):
        assert np.array_equal(per_rank[g % world][g // world], block)
    positions = [(r, i) for r in range(world) for i in range(300)]
    assert len({r + world * i for r, i in positions}) == 900
    with pytest.raises(ValueError, match="rank"):
        shards.WeightedReader(corpus, BLOCK, rank=3, world_size=3)


def test_later_epochs_reshuffle_the_same_documents(corpus):
    m = manifest.load(corpus)
    books2 = next(s for s in m["sets"] if s["name"] == "books2")
    epoch = books2["train"]["tokens"] + books2["train"]["documents"]
    reader = shards.WeightedReader(corpus, BLOCK, seed=9, sets=["books2"])
    assert reader.sets == ["books2"] and reader.weights == {"books2": 1.0}
    n_blocks = -(-2 * epoch // (BLOCK + 1))
    stream = np.concatenate(take(reader, n_blocks))[: 2 * epoch]

    def docs(tokens):
        return [tuple(d) for d in np.split(tokens, np.flatnonzero(tokens == reader.eot_id) + 1) if len(d)]

    first, second = docs(stream[:epoch]), docs(stream[epoch:])
    rows = read_corpus(corpus, ["set", "tokens"], split="train").to_pylist()
    expected = Counter(tuple(r["tokens"]) + (reader.eot_id,) for r in rows if r["set"] == "books2")
    assert Counter(first) == Counter(second) == expected
    assert first != second, "epoch 1 is a new order of the same documents"


def test_val_split_and_set_restriction(corpus):
    val = shards.WeightedReader(corpus, BLOCK, split="val", seed=2)
    haystack = documents_of(corpus, "val")
    for name, block in itertools.islice(val.blocks(), 0, 2_000, 37):
        for run in pieces(block, val.eot_id):
            assert run.tobytes() in haystack[name]
    wiki = shards.WeightedReader(corpus, BLOCK, split="val", sets=["wikipedia"])
    assert {name for name, _ in itertools.islice(wiki.blocks(), 200)} == {"wikipedia"}
    with pytest.raises(ValueError, match="unknown set"):
        shards.WeightedReader(corpus, BLOCK, sets=["books3"])


def test_schedule_is_exact_per_period():
    owner, nth, slots = shards.schedule([0.60, 0.22, 0.08, 0.08, 0.03])
    assert slots.sum() == shards.PERIOD and np.bincount(owner).tolist() == slots.tolist()
    assert np.abs(slots / shards.PERIOD - np.array([0.60, 0.22, 0.08, 0.08, 0.03]) / 1.01).max() < 1 / shards.PERIOD
    for s in range(5):  # the k-th slot of a set is numbered k
        assert nth[owner == s].tolist() == list(range(slots[s]))
    assert shards.schedule([1.0, 1e-9])[2].tolist() == [shards.PERIOD - 1, 1]  # a tiny weight still gets a slot


def test_load_tokenizer_is_the_corpus_tokenizer(corpus, tmp_path):
    tok = shards.load_tokenizer(corpus)
    assert tok.get_vocab_size() == shards.WeightedReader(corpus, BLOCK).vocab_size
    assert tok.encode("<|user|>hi<|end|>", add_special_tokens=False).ids[0] == 3  # chat templates see specials
    copy = tmp_path / "corpus"
    copy.mkdir()
    (copy / "manifest.json").write_bytes((corpus / "manifest.json").read_bytes())
    (copy / "tokenizer.json").write_text((corpus / "tokenizer.json").read_text().replace("<|pad|>", "<|PAD|>"))
    with pytest.raises(ValueError, match="not the tokenizer"):
        shards.load_tokenizer(copy)
