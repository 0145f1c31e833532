"""Losing workers: a worker killed mid-stage on a cluster of separately started processes changes nothing in the
output; an input whose task kills its worker (here by outgrowing the worker's memory limit, so its nanny ends it)
on every try is reported as poison after the bounded number of tries, and the other inputs complete."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import cloudpickle
from cc_fixtures import Rec, make_inputs, pages, slow_html, write_warc
from distributed import Client

from corpusforge import cli, cluster, runtime, tasks

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module


def _kill_the_worker_on(address: str, name: str, killed: dict) -> None:
    """Wait until a task for input `name` runs, then SIGKILL the worker process running it (its nanny restarts
    it; the scheduler gives the task to a worker again)."""
    with Client(address, timeout=30) as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            busy = [w for w, keys in client.processing().items() if any(name in str(k) for k in keys)]
            if busy:
                time.sleep(0.5)  # well inside the task: it writes its shard's temporary file
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
            time.sleep(0.05)


def test_a_worker_killed_mid_stage_changes_nothing(tmp_path, separate_cluster, dask_client):
    inputs, _ = make_inputs(tmp_path / "in")
    slow = tmp_path / "in" / "slow.warc.gz"  # seconds of extraction: the task to kill is surely running
    write_warc(slow, [Rec("http://example.org/slow", slow_html(3_000).encode())] + pages("http://three.example"))
    args = ["commoncrawl", *map(str, [*inputs, slow]), "--languages", "en", "de", "ru", "zh", "nl", "--timeout", "600"]
    killed: dict = {}
    killer = threading.Thread(target=_kill_the_worker_on, args=(separate_cluster, "slow", killed))
    killer.start()
    code = cli.main([*args, "-o", str(tmp_path / "killed"), "--scheduler", separate_cluster])
    killer.join()
    assert code == 0 and killed, "no worker was killed"
    assert cli.main([*args, "-o", str(tmp_path / "clean"), "--scheduler", dask_client.scheduler.address]) == 0
    shards = {d: {p.name: p.read_bytes() for p in (tmp_path / d).glob("*.parquet")} for d in ("killed", "clean")}
    assert len(shards["killed"]) == len(inputs) + 1 and shards["killed"] == shards["clean"]
    summaries = [json.loads((tmp_path / d / runtime.SUMMARY_FILE).read_text()) for d in ("killed", "clean")]
    for summary in summaries:
        del summary["seconds"]
    assert summaries[0] == summaries[1]
    assert not list((tmp_path / "killed").glob(".*.tmp"))  # the killed writer's temporary file was cleared


def _task(item: str, out_dir: str, config) -> runtime.FileReport:
    """Writes one small file per input; the `poison` input outgrows any worker's memory limit."""
    if item == "poison":
        hoard = []
        for _ in range(400):  # up to 8 GiB, in steps the nanny's memory monitor sees
            hoard.append(bytearray(20 << 20))
            time.sleep(0.02)
        raise AssertionError("the nanny did not stop a worker far above its memory limit")
    if item == "beside":
        time.sleep(3)  # still running on the same worker when the poison task beside it kills it
    runtime.write_json_atomic(os.path.join(out_dir, f"{item}.json"), {"input": item})
    return runtime.FileReport(input=item, counts={"documents": 1})


def test_a_poison_input_is_reported_after_bounded_tries_and_the_rest_completes(tmp_path):
    config = cluster.ClusterConfig(memory_limit="600MiB", max_tries=2, dashboard_address="127.0.0.1:0")
    items = ["a", "poison", "b", "c", "d"]
    with cluster.connect(config, workers=2) as client:
        summary, reports = tasks.map_files(_task, items, tmp_path / "out", None, stage="poison-test",
                                             ctx=runtime.RunContext(client=client))
        client.wait_for_workers(2, timeout=60)  # the nannies brought their workers back
    assert summary.counts == {"documents": 4} and summary.errors == 1
    (error,) = [json.loads(line) for line in (tmp_path / "out" / runtime.ERRORS_FILE).read_text().splitlines()]
    assert error["file"] == "poison" and error["reason"] == (
        "poison input: its task lost its worker on each of 4 tries, the last 2 alone on the cluster (killed for "
        "memory or crashed); skipped")
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.json") if not p.stem.startswith("_")) == list("abcd")


def test_an_input_that_only_shared_a_dying_worker_is_tried_again_alone_and_completes(tmp_path):
    config = cluster.ClusterConfig(memory_limit="600MiB", max_tries=2, threads_per_worker=2,
                                   dashboard_address="127.0.0.1:0")
    with cluster.connect(config, workers=1) as client:
        summary, _ = tasks.map_files(_task, ["beside", "poison"], tmp_path / "out", None, stage="poison-test",
                                       ctx=runtime.RunContext(client=client))
    assert summary.counts == {"documents": 1} and summary.errors == 1
    (error,) = [json.loads(line) for line in (tmp_path / "out" / runtime.ERRORS_FILE).read_text().splitlines()]
    assert error["file"] == "poison" and (tmp_path / "out" / "beside.json").exists()
