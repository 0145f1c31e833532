"""Custom quality filters for tests/test_custom_filters.py, loaded by path (`tests/custom_filters.py:function`), so
they reach the Dask workers by value. `no_shouting` is docs/quality.md's example."""

import pyarrow.compute as pc


def no_shouting(batch):
    """Keep a document unless most of its letters are capitals (a keep mask: dropped as `no_shouting`)."""
    upper = pc.utf8_length(pc.replace_substring_regex(batch["text"], r"[^A-Z]", ""))
    lower = pc.utf8_length(pc.replace_substring_regex(batch["text"], r"[^a-z]", ""))
    return pc.less_equal(upper, lower).to_numpy(zero_copy_only=False)


def by_topic(batch):
    """Reasons, one per document: drop casino and lottery pages, each under its own reason."""
    return ["casino" if "casino" in t.lower() else "lottery" if "lottery" in t.lower() else ""
            for t in batch["text"].to_pylist()]


def long_only(batch):
    """The batch filtered: only documents of at least ten words."""
    return batch.filter(pc.greater_equal(pc.list_value_length(pc.utf8_split_whitespace(batch["text"])), 10))
