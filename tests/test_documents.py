"""corpusforge.documents: which files count as a stage's document shards."""

from __future__ import annotations

import pytest

from corpusforge.documents import find_shards


def test_find_shards_takes_a_folders_shards_and_nothing_beside_them(tmp_path):
    stage = tmp_path / "webtext2"
    for name in ("b.parquet", "a.parquet", "_dropped.parquet", ".a.parquet.host-1.tmp", "notes.txt",
                 "links/links-0.parquet", "_work/keys.parquet"):
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        (stage / name).write_bytes(b"")
    a, b = str(stage / "a.parquet"), str(stage / "b.parquet")
    assert find_shards([str(stage)]) == ([a, b], [])
    assert find_shards([str(stage / "*.parquet"), str(stage)]) == ([a, b], [])  # globs skip side files; no repeats
    assert find_shards([str(stage / "_dropped.parquet")]) == ([str(stage / "_dropped.parquet")], [])  # named: taken
    assert find_shards([str(tmp_path / "books"), str(tmp_path / "nothing-*.parquet"), b]) == (
        [b], [str(tmp_path / "books"), str(tmp_path / "nothing-*.parquet")])
    with pytest.raises(ValueError, match="is the output folder itself"):
        find_shards([str(stage)], exclude=stage)
