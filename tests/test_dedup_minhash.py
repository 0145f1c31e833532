"""MinHash signatures: the bulk path equals datasketch built the slow way, for word and character shingles; LSH
bands agree with datasketch's MinHashLSH; shingles follow the script of each character; normalization; parameters
that refuse to mix."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from corpusforge.dedup import minhash
from corpusforge.dedup.minhash import MinHashParams, SignatureMismatch
from corpusforge.dedup.normalize import normalize_batch, normalize_text, normalize_url, url_hash

from dedup_corpus import cjk_documents, web_documents

SCRIPTS = [  # Thai, CJK extension B, half-width Katakana, Korean (spaced), fewer characters than the n-gram
    "ภาษาไทยเป็นภาษาที่ไม่มีการเว้นวรรคระหว่างคำ แต่เว้นวรรคระหว่างประโยค", "𠀀𠀁𠀂𠀃𠀄𠀅 and 𪜀", "ｶﾀｶﾅのﾃｷｽﾄ｡ﾃｽﾄ",
    "한국어는 단어 사이에 띄어쓰기를 합니다 그래서 단어 단위로 나눕니다", "中文", "iPhone手机很好用abc中def"]


@pytest.fixture(scope="module")
def texts(shared_data):
    docs = [d["text"] for d in web_documents(shared_data)[:60]]
    cjk = [text for _, text in cjk_documents(shared_data).values()]
    # edge cases: fewer words than the n-gram, only punctuation, empty, non-Latin script, digits
    return docs + cjk + SCRIPTS + ["two words", "?!", "", "Привет, мир! Это тест — «кавычки».",
                                   "Order 66 at 10:30 on 2019-07-17"]


@pytest.mark.parametrize("params", [MinHashParams(),
                                    MinHashParams(ngram=3, char_ngram=2, permutations=64, bands=16, rows=4, seed=42)])
def test_bulk_signatures_equal_datasketch_slow_path(texts, params):
    bulk = minhash.minhash_signatures(texts, params)
    assert bulk.shape == (len(texts), params.permutations) and bulk.dtype == np.uint32
    for text, signature in zip(texts, bulk):
        slow = minhash.datasketch_minhash(params)
        slow.update_batch(minhash.shingles(normalize_text(text), params))
        assert np.array_equal(slow.hashvalues, signature)
    # and one document the slowest way, shingle by shingle with MinHash.update
    one = MinHash(num_perm=params.permutations, seed=params.seed, hashfunc=minhash.shingle_hash, scheme="affine32")
    for shingle in minhash.shingles(normalize_text(texts[0]), params):
        one.update(shingle)
    assert np.array_equal(one.hashvalues, bulk[0])
    assert minhash.to_datasketch(bulk[0], params).jaccard(one) == 1.0
    # an empty or punctuation-only text has datasketch's empty signature; a short one is one shingle
    assert minhash.to_datasketch(bulk[-3], params).is_empty() and np.all(bulk[-4] == minhash.EMPTY)
    assert not minhash.to_datasketch(bulk[-5], params).is_empty()


def test_bulk_shingle_hashes_match_plain_hash(texts):
    for part in (texts[:20], texts[55:]):  # web text; then web, Chinese, Japanese and the edge cases mixed
        batch = normalize_batch(part)
        h64, doc = minhash.shingle_hashes64(batch, MinHashParams())
        plain = [minhash.shingle_hash64(s) for d in range(len(part)) for s in
                 minhash.shingles(batch.text(d), MinHashParams())]
        assert h64.tolist() == plain
        assert np.all(np.diff(doc) >= 0)


def test_shingles_follow_the_script_of_each_character():
    params = MinHashParams(ngram=2, char_ngram=3)

    def shingles(text):
        return [s.decode() for s in minhash.shingles(normalize_text(text), params)]

    # words from the runs of spaced scripts, characters of the others: per character, not per document
    assert shingles("iPhone手机很好用, abc中def") == ["iphone abc", "abc def", "手机很", "机很好", "很好用", "好用中"]
    assert shingles("東京タワー") == ["東京タ", "京タワ", "タワー"]
    assert shingles("ภาษาไทย") == ["ภาษ", "าษา", "ษาไ", "าไท", "ไทย"]
    assert shingles("한국어 단어 띄어쓰기") == ["한국어 단어", "단어 띄어쓰기"]  # Korean is spaced: words
    assert shingles("中") == ["中"] and shingles("one") == ["one"] and shingles("") == []
    # text without such characters has exactly the word n-grams it had before character shingles
    text = normalize_text("The quick brown fox jumps over the lazy dog")
    words = text.split(" ")
    assert minhash.shingles(text, MinHashParams()) == [" ".join(words[i:i + 5]).encode() for i in range(5)]


def test_band_buckets_match_datasketch_minhashlsh(texts):
    params = MinHashParams()
    originals = texts[:40] + texts[60:64]  # English web pages, then Chinese and Japanese ones
    # plant near copies so that some buckets are shared
    copies = [texts[i] + " one more line at the end" for i in range(5)] + [t + "本文来源：新华网" for t in texts[60:64]]
    sigs = minhash.minhash_signatures(originals + copies, params)
    lsh = MinHashLSH(num_perm=params.permutations, params=(params.bands, params.rows))
    for i, sig in enumerate(sigs):
        lsh.insert(i, minhash.to_datasketch(sig, params))
    buckets = minhash.band_hashes(sigs, params)
    for i, sig in enumerate(sigs):
        ours = {j for j in range(len(sigs)) if np.any(buckets[j] == buckets[i])}
        assert set(lsh.query(minhash.to_datasketch(sig, params))) == ours
    assert any(len(set(lsh.query(minhash.to_datasketch(sigs[44 + k], params)))) > 1 for k in range(5))
    assert all(40 + k in lsh.query(minhash.to_datasketch(sigs[49 + k], params)) for k in range(4))


def test_estimated_jaccard_tracks_true_jaccard(texts):
    params = MinHashParams(permutations=256, bands=32, rows=8)
    a = normalize_text(texts[3]).split(" ")
    for keep in (1.0, 0.9, 0.7, 0.5):
        b = a[: int(len(a) * keep)]
        sa, sb = (set(minhash.shingles(" ".join(x), params)) for x in (a, b))
        true = len(sa & sb) / len(sa | sb)
        sig = minhash.minhash_signatures([" ".join(a), " ".join(b)], params)
        assert abs(minhash.estimated_jaccard(sig[0], sig[1]) - true) < 0.1


def test_normalization():
    assert normalize_text("  Hello,\tWORLD!! It's 2019-07-17\n\n") == "hello world it s 0000 00 00"
    assert normalize_text("“Quoted” — text… and «more»\u00a0here") == "quoted text and more here"
    assert normalize_text("ÉCOLE Über") == "école über"
    assert normalize_text("!!! ...") == ""
    assert normalize_text("你好，世界！（测试）「引用」：ｶﾀｶﾅ｡") == "你好 世界 测试 引用 ｶﾀｶﾅ"  # full-width punctuation
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
    with pytest.raises(SignatureMismatch, match="char_ngram"):
        params.require(MinHashParams(char_ngram=3), "somewhere")
    with pytest.raises(ValueError, match="char_ngram"):
        MinHashParams(char_ngram=0).validate()
    with pytest.raises(SignatureMismatch, match="scheme"):
        params.require(MinHashParams(scheme="legacy"), "somewhere")
    params.require(MinHashParams.from_json(params.to_json()), "a copy")
    with pytest.raises(ValueError, match="exceeds"):
        MinHashParams(bands=20, rows=8).validate()
    with pytest.raises(ValueError, match="signatures only"):
        MinHashParams(scheme="legacy").validate()
