"""The same input on a LocalCluster and on a cluster of separate processes (`dask scheduler`, `dask worker` on
loopback, reached with `--scheduler tcp://HOST:PORT`) gives byte-identical shards."""

from __future__ import annotations

import json

from cc_fixtures import make_inputs

from corpusforge import cli
from corpusforge.runtime import SUMMARY_FILE

def test_local_cluster_and_separate_processes_give_identical_shards(tmp_path, separate_cluster, dask_client):
    inputs, _ = make_inputs(tmp_path / "in")
    args = ["commoncrawl", *map(str, inputs), "--languages", "en", "de", "ru", "zh", "nl"]
    assert cli.main([*args, "-o", str(tmp_path / "remote"), "--scheduler", separate_cluster]) == 0
    assert cli.main([*args, "-o", str(tmp_path / "local"), "--scheduler", dask_client.scheduler.address]) == 0
    remote = {p.name: p.read_bytes() for p in (tmp_path / "remote").glob("*.parquet")}
    local = {p.name: p.read_bytes() for p in (tmp_path / "local").glob("*.parquet")}
    assert len(remote) == len(inputs) and remote == local
    summaries = [json.loads((tmp_path / d / SUMMARY_FILE).read_text()) for d in ("remote", "local")]
    for summary in summaries:
        del summary["seconds"]
    assert summaries[0] == summaries[1] and summaries[0]["counts"]["documents"] == 9
