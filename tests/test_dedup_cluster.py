"""The same dedup on the shared LocalCluster and on a separately started `dask scheduler` with two `dask worker`
processes (ephemeral ports on 127.0.0.1) gives identical survivors, byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corpusforge.dedup import DedupConfig, run

from dedup_corpus import planted_corpus, write_shards

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", f"distributed.cli.dask_{args[0]}", *args[1:]]
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)


@pytest.fixture
def separate_cluster(tmp_path):
    """A scheduler and two single-threaded workers as their own processes; yields the scheduler address."""
    info = tmp_path / "scheduler.json"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(info)], tmp_path / "scheduler.log")]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert procs[0].poll() is None and time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.1)
        for i in range(2):
            procs.append(_start(["worker", "--scheduler-file", str(info), "--nthreads", "1", "--no-nanny",
                                 "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}"],
                                tmp_path / f"worker{i}.log"))
        address = json.loads(info.read_text())["address"]
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        if info.exists():  # ask the scheduler to close itself and its workers: faster than signals
            from distributed import Client

            try:
                with Client(json.loads(info.read_text())["address"], timeout=10) as client:
                    client.shutdown()
            except (OSError, TimeoutError, ValueError):
                pass
        for proc in reversed(procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_local_cluster_and_separate_processes_give_identical_survivors(shared_data, tmp_path, dask_client,
                                                                      separate_cluster):
    rows, truth = planted_corpus(shared_data, seed=11)
    write_shards(tmp_path / "commoncrawl", [r for r in rows if r["source"] == "commoncrawl"], per_shard=120)
    write_shards(tmp_path / "webtext2", [r for r in rows if r["source"] == "webtext2"])
    config = DedupConfig(inputs=[str(tmp_path / "commoncrawl"), str(tmp_path / "webtext2")], partition_rows=1000)
    local = run(config, tmp_path / "local", client=dask_client)
    remote = run(config, tmp_path / "remote", scheduler=separate_cluster)
    assert remote.counts == local.counts and local.counts["removed_near"] > 50
    names = sorted(p.name for p in (tmp_path / "local").glob("*.parquet"))
    assert names == sorted(p.name for p in (tmp_path / "remote").glob("*.parquet")) and len(names) > 4
    for name in names:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes(), name
