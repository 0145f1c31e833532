"""Fixtures for the weighted-corpus tests: document shards of all four sources from real text in shared/data (one
folder with a `source` column, as the dedup stage writes it), a tokenizer trained on them, and a corpus mixed from
them in GPT-3's shape (books split into books1 and books2)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from mixdata import books_docs, commoncrawl_docs, gpt3_config, webtext2_docs, wikipedia_docs, write_documents

from corpusforge.runtime import RunContext


@pytest.fixture(scope="session")
def documents(shared_data, tmp_path_factory) -> Path:
    """A folder of document shards like build/<run>/dedup: commoncrawl split over two files, shuffled order."""
    folder = tmp_path_factory.mktemp("dedup")
    cc = commoncrawl_docs(shared_data, 300)
    write_documents(folder, "commoncrawl-0", cc[:150])
    write_documents(folder, "commoncrawl-1", cc[150:])
    mixed = webtext2_docs(shared_data, 250) + wikipedia_docs(shared_data, 70) + books_docs(shared_data)
    random.Random(0).shuffle(mixed)
    write_documents(folder, "others", mixed)
    # Side files a stage leaves beside its shards are not documents: the mixer must skip them.
    write_documents(folder, "_duplicates", cc[:3])
    return folder


@pytest.fixture(scope="session")
def tokenizer_file(documents, tmp_path_factory, dask_client) -> Path:
    from corpusforge.mix import tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    config = tokenizer.TokenizerConfig(inputs=[str(documents)], vocab_size=4096, sample_chars_per_source=600_000)
    tokenizer.run(dataclasses.replace(config, output=str(out)), RunContext(client=dask_client))
    return out / tokenizer.TOKENIZER_FILE


@pytest.fixture(scope="session")
def corpus(documents, tokenizer_file, tmp_path_factory, dask_client) -> Path:
    from corpusforge.mix import mixer

    out = tmp_path_factory.mktemp("corpus")
    mixer.run(dataclasses.replace(gpt3_config(documents, tokenizer_file), output=str(out)),
              RunContext(client=dask_client))
    return out

