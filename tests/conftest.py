"""Shared fixtures: the real data beside the project (../shared/data), skipped with a reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: the real-data tests need it (CI has it; a user's clone may not)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set CORPUSFORGE_SHARED_DATA to its path)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dask_client():
    """One LocalCluster (2 worker processes) shared by the tests that need Dask."""
    from corpusforge.runtime import dask_client as make

    with make(workers=2) as client:
        yield client


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on loopback serving tmp_path/www; yields (root dir, base URL)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def separate_cluster(tmp_path):
    """A real cluster of separate processes on 127.0.0.1 — `dask scheduler` (ephemeral port) and `dask worker`
    with 2 single-threaded worker processes — as a user would start one; yields the scheduler address
    (tcp://127.0.0.1:PORT) and stops the processes afterwards."""
    import json
    import subprocess
    import sys
    import time

    from distributed import Client

    def dask(command: str, *args: str) -> subprocess.Popen:  # the `dask scheduler` / `dask worker` commands
        return subprocess.Popen([sys.executable, "-m", f"distributed.cli.dask_{command}", *args],
                                stdout=log, stderr=log)

    info, logs = tmp_path / "scheduler.json", tmp_path / "cluster.log"
    with logs.open("wb") as log:
        procs = [dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                      "--scheduler-file", str(info))]
        try:
            deadline = time.monotonic() + 60
            while not info.exists() or not info.read_text().strip():
                assert procs[0].poll() is None and time.monotonic() < deadline, logs.read_text()
                time.sleep(0.1)
            address = json.loads(info.read_text())["address"]
            procs.append(dask("worker", address, "--nworkers", "2", "--nthreads", "1", "--host", "127.0.0.1",
                              "--no-dashboard"))
            with Client(address, timeout=60) as client:
                client.wait_for_workers(2, timeout=120)
                assert len(client.scheduler_info()["workers"]) == 2
            yield address
        finally:
            try:  # the scheduler closes itself and its workers: faster than a signal to each process
                with Client(json.loads(info.read_text())["address"], timeout=10) as client:
                    client.shutdown()
            except (OSError, TimeoutError, ValueError):
                pass
            for proc in reversed(procs):
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run ~10x faster on one thread than on two busy cores: a module of them asks for this with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
