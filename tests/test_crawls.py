"""GPT-3's slice of Common Crawl (corpusforge/sources/crawls.py): a range of months resolves to the right crawl ids
through a loopback copy of Common Crawl's collection index, their `warc.paths.gz` listings are read with a seeded,
evenly spread sample of each, and `corpusforge commoncrawl --crawls ... --sample-files N` extracts them; bad specs,
a range naming no crawl and a missing listing are one line."""

from __future__ import annotations

import gzip
import json

import pyarrow.parquet as pq
import pytest
from cc_fixtures import pages, write_warc

from corpusforge import cli, recipe
from corpusforge.errors import UserError
from corpusforge.inputs import MissingInput
from corpusforge.runtime import SUMMARY_FILE
from corpusforge.sources import crawls

# A copy of collinfo.json's shape, newest first; 2017-13 has no `from` (its name says the month) and 2018-05 neither
# (its ISO week does: the week of 29 January 2018).
INDEX = [
    {"id": "CC-MAIN-2020-05", "name": "January 2020 Index", "from": "2020-01-17T11:43:49", "to": "2020-01-29T04:30:26"},
    {"id": "CC-MAIN-2019-51", "name": "December 2019 Index", "from": "2019-12-05T11:23:42"},
    {"id": "CC-MAIN-2019-04", "name": "January 2019 Index", "from": "2019-01-15T19:24:43"},
    {"id": "CC-MAIN-2018-05", "name": "Index 2018-05"},
    {"id": "CC-MAIN-2017-13", "name": "March 2017 Index"},
    {"id": "CC-MAIN-2016-07", "name": "February 2016 Index", "from": "2016-02-05T22:05:22"},
    {"id": "CC-MAIN-2015-48", "name": "November 2015 Index", "from": "2015-11-24T22:04:12"},
]
GPT3 = ["CC-MAIN-2016-07", "CC-MAIN-2017-13", "CC-MAIN-2018-05", "CC-MAIN-2019-04", "CC-MAIN-2019-51"]
FILES_PER_CRAWL = 12


def _paths(crawl_id: str) -> list[str]:
    return [f"crawl-data/{crawl_id}/segments/{i:03d}/warc/{crawl_id}-{i:05d}.warc.gz" for i in range(FILES_PER_CRAWL)]


@pytest.fixture
def mirror(http_root):
    """A loopback Common Crawl: collinfo.json and each crawl's warc.paths.gz; the WARC files themselves are written
    by the test that reads them."""
    root, base = http_root
    (root / "collinfo.json").write_text(json.dumps(INDEX))
    for crawl in INDEX:
        listing = root / "crawl-data" / crawl["id"] / "warc.paths.gz"
        listing.parent.mkdir(parents=True)
        with gzip.open(listing, "wt") as fh:
            fh.write("\n".join(_paths(crawl["id"])) + "\n")
    return root, base


def test_gpt3_range_resolves_to_its_crawls_and_an_even_seeded_sample(mirror):
    root, base = mirror
    index = crawls.read_index(base + "collinfo.json")
    assert crawls.crawl_ids(["2016-01..2019-12"], index) == GPT3
    assert crawls.crawl_ids(["2016..2019"], index) == GPT3
    assert crawls.crawl_ids(["2019", "CC-MAIN-2015-48", "2019-01"], index) == [
        "CC-MAIN-2015-48", "CC-MAIN-2019-04", "CC-MAIN-2019-51"]

    files = crawls.warc_files(["2016-01..2019-12"], base_url=base, index_url=base + "collinfo.json",
                              sample_files=3, seed=7)
    assert len(files) == 3 * len(GPT3)
    for i, crawl_id in enumerate(GPT3):
        chosen = files[3 * i: 3 * i + 3]
        positions = [_paths(crawl_id).index(f.removeprefix(base)) for f in chosen]
        # one file from each third of the listing, so the sample spans the crawl's segments
        assert [p * 3 // FILES_PER_CRAWL for p in positions] == [0, 1, 2], positions
    assert files == crawls.warc_files(["2016-01..2019-12"], base_url=base, index_url=base + "collinfo.json",
                                      sample_files=3, seed=7)
    offsets = {tuple(crawls.sample_evenly(list(range(100)), 4, seed, "CC-MAIN-2016-07")) for seed in range(10)}
    assert len(offsets) > 1, "the seed moves the sample"
    everything = crawls.warc_files(["2019-12"], base_url=base, index_url=base + "collinfo.json")
    assert everything == [base + p for p in _paths("CC-MAIN-2019-51")]


def test_commoncrawl_command_reads_the_sampled_files(mirror, tmp_path, capsys):
    root, base = mirror
    expected = []
    for crawl_id in GPT3:
        (chosen,) = crawls.sample_evenly(_paths(crawl_id), 1, 1234, crawl_id)
        write_warc(root / chosen, pages(f"http://{crawl_id.lower()}.example", ["en"]))
        expected.append(base + chosen)
    out = tmp_path / "out"
    code = cli.main(["commoncrawl", "--crawls", "2016-01..2019-12", "--sample-files", "1", "--crawl-index",
                     base + "collinfo.json", "--base-url", base, "-o", str(out), "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["files"] == len(GPT3) and summary["errors"] == 0 and summary["counts"]["documents"] == len(GPT3)
    origins = sorted(f for p in out.glob("*.parquet") for f in pq.read_table(p).column("origin_file").to_pylist())
    assert origins == sorted(expected)


def test_bad_crawl_specs_are_one_line(mirror, tmp_path, capsys):
    root, base = mirror
    for spec in ("2016-13..2019-12", "2019-12..2016-01", "May 2019", "CC-MAIN-19"):
        with pytest.raises(ValueError, match="crawls: "):
            crawls.check_spec(spec)
    index = crawls.read_index(base + "collinfo.json")
    with pytest.raises(UserError, match="'2021' names no crawl"):
        crawls.crawl_ids(["2021"], index)
    (root / "crawl-data" / "CC-MAIN-2019-51" / "warc.paths.gz").unlink()
    with pytest.raises(MissingInput, match="CC-MAIN-2019-51/warc.paths.gz: cannot read it"):
        crawls.warc_files(["2019"], base_url=base, index_url=base + "collinfo.json")
    with pytest.raises(UserError, match="crawl index .*nothing.json: cannot read it"):
        crawls.read_index(base + "nothing.json")
    code = cli.main(["commoncrawl", "--crawls", "2016-1", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'2016-1'" in err


def test_the_gpt3_recipe_reads_gpt3s_range():
    config = recipe.load("pipelines/gpt3.toml").sections["commoncrawl"]
    assert config.crawls == ["2016-01..2019-12"] and config.sample_files
