"""Memory per stage: workers advertise their memory limit as the Dask resource "memory" and each task of a stage
claims `[run.cluster] task_memory` of it, so a worker runs at most limit / claim of that stage's tasks at once; a
claim no worker can hold stops the stage in one line before any task runs."""

from __future__ import annotations

import sys
import time

import cloudpickle
import pytest
from rich.console import Console

from corpusforge import cluster, tasks
from corpusforge.errors import UserError

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module


def _span(item: int) -> tuple[float, float]:
    start = time.time()
    time.sleep(0.6)
    return start, time.time()


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    return max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)


def test_a_stage_claims_its_task_memory_and_a_claim_no_worker_holds_is_one_line():
    config = cluster.ClusterConfig(memory_limit="600MiB", threads_per_worker=2, dashboard_address="127.0.0.1:0",
                                   task_memory={"small": "200MiB", "large": "400MiB", "huge": "1GiB"})
    quiet = Console(quiet=True)
    with cluster.connect(config, workers=1) as client:
        (worker,) = client.scheduler_info(n_workers=-1)["workers"].values()
        assert worker["resources"] == {"memory": 600 * 2**20} and worker["nthreads"] == 2
        small = tasks.map_tasks(client, _span, range(4), title="small", console=quiet)
        large = tasks.map_tasks(client, _span, range(4), title="large: a phase", console=quiet)
        assert (_most_at_once(small), _most_at_once(large)) == (2, 1)  # two claims fit in 600 MiB, not two of 400
        with pytest.raises(UserError, match=r"^huge: each task claims 1.00 GiB \(\[run.cluster\] task_memory\) but "
                                            r"the largest worker has 600.00 MiB"):
            tasks.map_tasks(client, _span, range(2), title="huge", console=quiet)
        # a stage without a claim runs as before, two at a time on two threads
        assert _most_at_once(tasks.map_tasks(client, _span, range(4), title="other", console=quiet)) == 2


def test_batch_and_kubernetes_workers_advertise_their_memory():
    slurm = cluster.ClusterConfig(kind="slurm", cores=8, memory="32GiB", processes=4)
    assert f"--resources memory={8 * 2**30}" in cluster.job_script(slurm)
    pytest.importorskip("dask_kubernetes", reason="dask-kubernetes (the kubernetes extra) is not installed")
    spec = cluster.kube_spec(cluster.ClusterConfig(kind="kubernetes", image="corpusforge:1", memory_limit="4GiB"))
    (container,) = spec["spec"]["worker"]["spec"]["containers"]
    assert f"--resources memory={4 * 2**30}" in " ".join(map(str, container["args"]))
