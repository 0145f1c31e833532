"""The same input on a LocalCluster and on a cluster of separate processes (`dask scheduler`, `dask worker` on
loopback, reached with `--scheduler tcp://HOST:PORT`) gives byte-identical shards."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cc_fixtures import make_inputs
from distributed import Client

from corpusforge import cli
from corpusforge.runtime import SUMMARY_FILE

DASK = str(Path(sys.executable).parent / "dask")


@pytest.fixture
def separate_cluster(tmp_path):
    """A scheduler and a worker command (2 worker processes, 1 thread each) as separate processes on 127.0.0.1;
    yields the scheduler address and stops them afterwards."""
    scheduler_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(scheduler_file)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        procs.append(subprocess.Popen([DASK, "worker", address, "--nworkers", "2", "--nthreads", "1",
                                       "--host", "127.0.0.1", "--no-dashboard"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            assert len(client.scheduler_info()["workers"]) == 2
            yield address
            client.shutdown()  # scheduler and workers close themselves; faster than signals to each command
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
