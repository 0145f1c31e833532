"""The same dedup on the shared LocalCluster and on a separately started `dask scheduler` with two `dask worker`
processes (ephemeral ports on 127.0.0.1) gives identical survivors, byte for byte."""

from __future__ import annotations

import dataclasses
import pytest

from corpusforge.dedup import DedupConfig, run
from corpusforge.runtime import RunContext

from dedup_corpus import planted_corpus, write_shards

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


def test_local_cluster_and_separate_processes_give_identical_survivors(shared_data, tmp_path, dask_client,
                                                                      separate_cluster):
    rows, truth = planted_corpus(shared_data, seed=11)
    write_shards(tmp_path / "commoncrawl", [r for r in rows if r["source"] == "commoncrawl"], per_shard=120)
    write_shards(tmp_path / "webtext2", [r for r in rows if r["source"] == "webtext2"])
    config = DedupConfig(inputs=[str(tmp_path / "commoncrawl"), str(tmp_path / "webtext2")], partition_rows=1000)
    local = run(dataclasses.replace(config, output=str(tmp_path / "local")), RunContext(client=dask_client))
    remote = run(dataclasses.replace(config, output=str(tmp_path / "remote")), RunContext(scheduler=separate_cluster))
    assert remote.counts == local.counts and local.counts["removed_near"] > 50
    names = sorted(p.name for p in (tmp_path / "local").glob("*.parquet"))
    assert names == sorted(p.name for p in (tmp_path / "remote").glob("*.parquet")) and len(names) > 4
    for name in names:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes(), name
