"""Near duplicates in scripts written without spaces (Chinese, Japanese): real pages with the edits web copies
get are found through character shingles, distinct pages on one topic or with a shared footer are kept, English
in the same run is deduplicated as before, and the shingle settings are recorded and refused when they differ."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from corpusforge.dedup import DedupConfig, MinHashParams, SignatureMismatch, minhash, run
from corpusforge.dedup.normalize import normalize_text
from corpusforge.runtime import RunContext

from dedup_corpus import cjk_corpus, write_shards

pytestmark = [pytest.mark.shared_data]


def jaccard(a: str, b: str, shingles) -> float:
    sa, sb = (set(shingles(normalize_text(t))) for t in (a, b))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def ours(text: str) -> list[bytes]:
    return minhash.shingles(text, MinHashParams())


def words_only(text: str) -> list[bytes]:
    """What the shingles were before: word 5-grams whatever the script (a Chinese clause is one "word")."""
    words = text.split(" ") if text else []
    return [" ".join(words[i:i + 5]).encode() for i in range(max(len(words) - 4, 1))] if words else []


@pytest.fixture(scope="module")
def deduplicated(shared_data, tmp_path_factory, dask_client):
    rows, truth = cjk_corpus(shared_data)
    base = tmp_path_factory.mktemp("scripts")
    write_shards(base / "in", rows, per_shard=40)
    summary = run(DedupConfig(inputs=[str(base / "in")], output=str(base / "out")), RunContext(client=dask_client))
    removed = {r["removed_id"]: r for r in pq.read_table(base / "out" / "_duplicates.parquet").to_pylist()}
    return rows, truth, base, removed, summary


def test_chinese_and_japanese_near_duplicates_are_found(deduplicated):
    rows, truth, _, removed, _ = deduplicated
    text = {r["id"]: r["text"] for r in rows}
    cjk_groups = [g for g in truth.groups if truth.kinds[g[1]] == "changed characters"]
    assert len(cjk_groups) == 8
    for group in truth.groups:  # every planted group, Chinese, Japanese or English, is down to one document
        assert sum(i not in removed for i in group) == 1, [truth.kinds.get(i) for i in group if i not in removed]
        assert all(removed[i]["kept_id"] in group for i in group if i in removed)
    for i in (i for group in cjk_groups for i in group if i in removed):  # and it was similar to its survivor
        assert jaccard(text[i], text[removed[i]["kept_id"]], ours) >= 0.7
    # word shingles alone could not see most of them: 1% of the characters changed breaks most clause "words"
    changed = [(g[0], i) for g in cjk_groups for i in g if truth.kinds.get(i) == "changed characters"]
    assert sum(jaccard(text[a], text[b], words_only) < 0.7 for a, b in changed) >= 5
    # a copy with ASCII punctuation for the full-width marks has the original's canonical text, and a removed
    # document is `exact` exactly when its canonical text is its survivor's
    for group in cjk_groups:
        half = next(i for i in group if truth.kinds.get(i) == "half-width punctuation")
        assert normalize_text(text[half]) == normalize_text(text[group[0]])
    for i, r in removed.items():
        assert (r["kind"] == "exact") == (normalize_text(text[i]) == normalize_text(text[r["kept_id"]]))


def test_distinct_texts_on_one_topic_or_with_one_footer_are_kept(deduplicated):
    _, truth, _, removed, summary = deduplicated
    assert len(truth.distinct) == 6 and not set(truth.distinct) & removed.keys()
    planted = {i for g in truth.groups for i in g}
    assert removed.keys() <= planted  # nothing else in the run was merged, Chinese or English
    assert summary.counts["removed_near"] + summary.counts["removed_exact"] == len(removed)


def test_shingle_settings_are_recorded_and_refused_when_they_differ(deduplicated, dask_client):
    _, _, base, _, summary = deduplicated
    recorded = json.loads((base / "out" / "_minhash.json").read_text())
    assert recorded["ngram"] == 5 and recorded["char_ngram"] == 5 and summary.extra["minhash"]["char_ngram"] == 5
    with pytest.raises(SignatureMismatch, match="char_ngram"):
        run(DedupConfig(inputs=[str(base / "in")], char_ngram=3, output=str(base / "out")),
            RunContext(client=dask_client))
    # a work folder from before character shingles (normalization v1, no char_ngram) is not resumed either
    keys = base / "old" / "_work" / "keys"
    keys.mkdir(parents=True)
    old = {k: v for k, v in MinHashParams().to_json().items() if k != "char_ngram"}
    (keys / "_minhash.json").write_text(json.dumps({**old, "normalization": "corpusforge-text/v1"}))
    with pytest.raises(SignatureMismatch, match="normalization"):
        run(DedupConfig(inputs=[str(base / "in")], output=str(base / "old")), RunContext(client=dask_client))
