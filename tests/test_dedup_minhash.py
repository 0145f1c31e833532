"""MinHash signatures: the bulk path equals datasketch built the slow way; LSH bands agree with datasketch's
MinHashLSH; normalization; parameters that refuse to mix."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from corpusforge.dedup import minhash
from corpusforge.dedup.minhash import MinHashParams, SignatureMismatch
from corpusforge.dedup.normalize import normalize_batch, normalize_text, normalize_url, url_hash

from dedup_corpus import web_documents


@pytest.fixture(scope="module")
def texts(shared_data):
    docs = [d["text"] for d in web_documents(shared_data)[:60]]
    # edge cases: fewer words than the n-gram, only punctuation, empty, non-Latin script, digits
    return docs + ["two words", "?!", "", "Привет, мир! Это тест — «кавычки».", "Order 66 at 10:30 on 2019-07-17"]


@pytest.mark.parametrize("params", [MinHashParams(),
                                    MinHashParams(ngram=3, permutations=64, bands=16, rows=4, seed=42)])
def test_bulk_signatures_equal_datasketch_slow_path(texts, params):
    bulk = minhash.minhash_signatures(texts, params)
    assert bulk.shape == (len(texts), params.permutations) and bulk.dtype == np.uint32
    for text, signature in zip(texts, bulk):
        slow = minhash.datasketch_minhash(params)
        slow.update_batch(minhash.shingles(normalize_text(text), params.ngram))
        assert np.array_equal(slow.hashvalues, signature)
    # and one document the slowest way, shingle by shingle with MinHash.update
    one = MinHash(num_perm=params.permutations, seed=params.seed, hashfunc=minhash.shingle_hash, scheme="affine32")
    for shingle in minhash.shingles(normalize_text(texts[0]), params.ngram):
        one.update(shingle)
    assert np.array_equal(one.hashvalues, bulk[0])
    assert minhash.to_datasketch(bulk[0], params).jaccard(one) == 1.0
    # an empty or punctuation-only text has datasketch's empty signature; a short one is one shingle
    assert minhash.to_datasketch(bulk[-3], params).is_empty() and np.all(bulk[-4] == minhash.EMPTY)
    assert not minhash.to_datasketch(bulk[-5], params).is_empty()


def test_bulk_shingle_hashes_match_plain_hash(texts):
    batch = normalize_batch(texts[:20])
    h64, doc = minhash.shingle_hashes64(batch, 5)
    plain = [minhash.shingle_hash64(s) for d in range(20) for s in minhash.shingles(batch.text(d), 5)]
    assert h64.tolist() == plain
    assert np.all(np.diff(doc) >= 0)


def test_band_buckets_match_datasketch_minhashlsh(texts):
    params = MinHashParams()
    sigs = minhash.minhash_signatures(texts[:40], params)
    # plant near copies so that some buckets are shared
    copies = [texts[i] + " one more line at the end" for i in range(5)]
    sigs = np.concatenate([sigs, minhash.minhash_signatures(copies, params)])
    lsh = MinHashLSH(num_perm=params.permutations, params=(params.bands, params.rows))
    for i, sig in enumerate(sigs):
        lsh.insert(i, minhash.to_datasketch(sig, params))
    buckets = minhash.band_hashes(sigs, params)
    for i, sig in enumerate(sigs):
        ours = {j for j in range(len(sigs)) if np.any(buckets[j] == buckets[i])}
        assert set(lsh.query(minhash.to_datasketch(sig, params))) == ours
    assert any(len(set(lsh.query(minhash.to_datasketch(sigs[40 + k], params)))) > 1 for k in range(5))


def test_estimated_jaccard_tracks_true_jaccard(texts):
    params = MinHashParams(permutations=256, bands=32, rows=8)
    a = normalize_text(texts[3]).split(" ")
    for keep in (1.0, 0.9, 0.7, 0.5):
        b = a[: int(len(a) * keep)]
        sa, sb = (set(minhash.shingles(" ".join(x), 5)) for x in (a, b))
        true = len(sa & sb) / len(sa | sb)
        sig = minhash.minhash_signatures([" ".join(a), " ".join(b)], params)
        assert abs(minhash.estimated_jaccard(sig[0], sig[1]) - true) < 0.1


def test_normalization():
    assert normalize_text("  Hello,\tWORLD!! It's 2019-07-17\n\n") == "hello world it s 0000 00 00"
    assert normalize_text("“Quoted” — text… and «more»\u00a0here") == "quoted text and more here"
    assert normalize_text("ÉCOLE Über") == "école über"
    assert normalize_text("!!! ...") == ""
    batch = normalize_batch(["", "a b", "!!", "c"])
    assert [batch.text(i) for i in range(4)] == ["", "a b", "", "c"]
    assert batch.word_doc.tolist() == [1, 1, 3]


def test_url_normalization():
    same = ["<https://www.Example.com:443/a/b/?utm_source=x&b=2&a=1#top>", "http://example.com/a/b?a=1&b=2",
            "example.com/a/b?b=2&a=1&fbclid=123"]
    assert {normalize_url(u) for u in same} == {"example.com/a/b?a=1&b=2"}
    assert len({url_hash(u) for u in same}) == 1
    assert normalize_url("https://example.com:8080/x") == "example.com:8080/x"
    assert normalize_url("https://example.com/a") != normalize_url("https://example.com/b")
    assert normalize_url(None) is None and url_hash("") is None


def test_parameters_refuse_to_mix_and_imply_a_threshold():
    params = MinHashParams()
    assert params.threshold() == pytest.approx((1 / 14) ** (1 / 8))
    assert params.candidate_probability(0.9) > 0.99 > 0.5 > params.candidate_probability(0.5)
    with pytest.raises(SignatureMismatch, match="ngram"):
        params.require(MinHashParams(ngram=3), "somewhere")
    with pytest.raises(SignatureMismatch, match="scheme"):
        params.require(MinHashParams(scheme="legacy"), "somewhere")
    params.require(MinHashParams.from_json(params.to_json()), "a copy")
    with pytest.raises(ValueError, match="exceeds"):
        MinHashParams(bands=20, rows=8).validate()
    with pytest.raises(ValueError, match="signatures only"):
        MinHashParams(scheme="legacy").validate()
