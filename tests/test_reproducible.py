"""Same inputs and settings, same bytes: the outputs that once carried the time they were written (an EPUB's dates,
a dedup keys file's task time) are the same bytes when written again later. (The WebText2 fetch's WARCs and the
whole stage from scratch: tests/test_webtext2_fetch.py and tests/test_webtext2_stage.py.)"""

from __future__ import annotations

import io
import json
import time
import zipfile

from corpusforge.dedup.scan import Shard, scan
from corpusforge.dedup.minhash import MinHashParams
from corpusforge.runtime import ShardWriter, read_report
from corpusforge.sample import books


def test_an_epub_written_again_later_is_the_same_bytes(tmp_path):
    first = books.write_epub(tmp_path / "a.epub", manifest_order=[2, 0, 1], **books.CLOCKMAKER)
    time.sleep(2.1)  # zip dates have a resolution of two seconds
    again = books.write_epub(tmp_path / "b.epub", manifest_order=[2, 0, 1], **books.CLOCKMAKER)
    assert first.read_bytes() == again.read_bytes()
    with zipfile.ZipFile(io.BytesIO(first.read_bytes())) as archive:
        assert {m.date_time for m in archive.infolist()} == {books.EPUB_MODIFIED.timetuple()[:6]}
        assert archive.namelist()[0] == "mimetype" and archive.infolist()[0].compress_type == zipfile.ZIP_STORED
        assert b"2024-01-01T00:00:00Z" in archive.read("EPUB/content.opf")


def test_a_dedup_keys_file_keeps_no_task_time(tmp_path):
    shard = tmp_path / "docs.parquet"
    with ShardWriter(shard) as writer:
        writer.write_rows([{"id": f"{i:032x}", "source": "books", "text": f"the text of book number {i} " * 20,
                            "lang": "en", "lang_score": 0.9, "origin_file": "b.txt", "origin_offset": i}
                           for i in range(50)])
    params = json.dumps(MinHashParams().to_json())
    keys = [tmp_path / name for name in ("a.keys.parquet", "b.keys.parquet")]
    for path in keys:
        report = scan(Shard(index=0, path=str(shard), keys_path=str(path), rows=50), params)
        assert report.counts["documents"] == 50 and report.seconds > 0
    assert keys[0].read_bytes() == keys[1].read_bytes()
    assert read_report(keys[1]).counts == {"documents": 50}
