"""The corpus tokenizer: trained on a seeded sample of every source, reserved special tokens, lossless,
reproducible, resumable; an existing tokenizer.json adopted; damaged input reported."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from corpusforge import runtime
from corpusforge.mix import tokenizer
from corpusforge.runtime import RunContext

pytestmark = pytest.mark.shared_data


def test_special_tokens_reserved_first_and_text_round_trips(tokenizer_file, documents):
    tok = tokenizer.load(tokenizer_file)
    assert tok.get_vocab_size() == 4096
    assert tokenizer.special_ids(tok) == {t: i for i, t in enumerate(tokenizer.SPECIAL_TOKENS)}
    rows = pq.read_table(documents / "others.parquet", columns=["source", "text"]).to_pylist()
    seen = set()
    for row in rows:
        if row["source"] in seen:
            continue
        seen.add(row["source"])
        ids = tok.encode(row["text"], add_special_tokens=False).ids
        assert tok.decode(ids) == row["text"], f"byte-level BPE must be lossless ({row['source']})"
        assert len(ids) < len(row["text"].encode()) / 2, "merges learned: far fewer tokens than bytes"
    assert seen == {"webtext2", "wikipedia", "books"}
    # A document that contains a special-token string is text, not a document boundary.
    ids = tokenizer.encode(tok, ["the end <|endoftext|> or not"])[0].as_py()
    assert 0 not in ids and tok.decode(ids) == "the end <|endoftext|> or not"


@pytest.mark.slow
def test_every_source_sampled_and_training_reproducible(tokenizer_file, documents, tmp_path, dask_client):
    summary = json.loads((tokenizer_file.parent / runtime.SUMMARY_FILE).read_text())
    rates = summary["extra"]["sample_rates"]
    assert set(rates) == {"commoncrawl", "webtext2", "wikipedia", "books"}
    # 600,000 characters per source: commoncrawl (over 800,000) is sampled, webtext2 (about 380,000) taken whole.
    assert 0.5 < rates["commoncrawl"] < 0.9 and rates["webtext2"] == 1.0

    config = tokenizer.TokenizerConfig(inputs=[str(documents)], vocab_size=4096, sample_chars_per_source=600_000)
    again = tmp_path / "again"
    tokenizer.run(dataclasses.replace(config, output=str(again)), RunContext(client=dask_client))
    assert (again / tokenizer.TOKENIZER_FILE).read_bytes() == tokenizer_file.read_bytes()

    resumed = tokenizer.run(dataclasses.replace(config, output=str(again)), RunContext(client=dask_client))
    assert resumed.resumed_files == resumed.files == 3  # same config and inputs: nothing redone

    other = tokenizer.TokenizerConfig(inputs=[str(documents)], vocab_size=4096, sample_chars_per_source=600_000,
                                      seed=99)
    tokenizer.run(dataclasses.replace(other, output=str(tmp_path / "other")), RunContext(client=dask_client))
    assert (tmp_path / "other" / tokenizer.TOKENIZER_FILE).read_bytes() != tokenizer_file.read_bytes()


def test_existing_tokenizer_adopted_with_missing_special_tokens(tmp_path, documents):
    plain, trainer = tokenizer.new_bpe(400, 2)
    trainer.special_tokens = []  # a tokenizer made elsewhere, without our reserved tokens
    texts = pq.read_table(documents / "commoncrawl-0.parquet", columns=["text"]).column("text").to_pylist()
    plain.train_from_iterator(texts, trainer=trainer)
    existing = tmp_path / "theirs.json"
    plain.save(str(existing))

    config = tokenizer.TokenizerConfig(inputs=[], existing=str(existing))
    config.validate()
    summary = tokenizer.run(dataclasses.replace(config, output=str(tmp_path / "out")), RunContext())
    assert summary.extra["added"] == list(tokenizer.SPECIAL_TOKENS)
    adopted = tokenizer.load(tmp_path / "out" / tokenizer.TOKENIZER_FILE)
    ids = tokenizer.special_ids(adopted)
    assert sorted(ids.values()) == list(range(plain.get_vocab_size(), plain.get_vocab_size() + 6))
    assert adopted.encode(texts[0]).ids == plain.encode(texts[0]).ids  # its own vocabulary is untouched


def test_damaged_shard_reported_and_training_goes_on(documents, tmp_path, dask_client):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.parquet").write_bytes((documents / "others.parquet").read_bytes())
    data = (documents / "commoncrawl-0.parquet").read_bytes()
    (folder / "cut.parquet").write_bytes(data[: len(data) // 2])  # a copy interrupted halfway

    config = tokenizer.TokenizerConfig(inputs=[str(folder)], vocab_size=1000, sample_chars_per_source=100_000)
    summary = tokenizer.run(dataclasses.replace(config, output=str(tmp_path / "out")), RunContext(client=dask_client))
    errors = [json.loads(line) for line in (tmp_path / "out" / runtime.ERRORS_FILE).read_text().splitlines()]
    assert summary.errors == 1 and [Path(e["file"]).name for e in errors] == ["cut.parquet"]
    assert "unreadable document shard" in errors[0]["reason"]
    assert tokenizer.load(tmp_path / "out" / tokenizer.TOKENIZER_FILE).get_vocab_size() == 1000
