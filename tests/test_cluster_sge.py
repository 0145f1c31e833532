"""dask-jobqueue's SGECluster against a real single-node Grid Engine (Debian's gridengine 8.1.9: sge_qmaster and
sge_execd) started here in a temp folder on free ports; the job script it submits is checked in
tests/test_cluster.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from test_cluster import _free_port, same_shards_as_local


SGE_BIN = Path("/usr/lib/gridengine")  # Debian's daemons and tools (/usr/bin's q* are wrappers of these)
CELL = "cf"


def _q(tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(SGE_BIN / tool), *args], capture_output=True, text=True, timeout=30, check=check)


def _stop(qconf: list[str], pid_file: Path, grace_s: float) -> None:
    # the daemons detach themselves: ask each to stop, wait for the pid it wrote, and kill it if it lingers
    if not pid_file.is_file():
        return
    _q("qconf", *qconf, check=False)
    pid = int(pid_file.read_text().split()[0])
    deadline = time.monotonic() + grace_s
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.2)


@pytest.fixture
def sge(tmp_path_factory, monkeypatch):
    """A single-node Grid Engine in a temp SGE_ROOT: classic (file) spooling, no Berkeley DB, no system-wide state,
    the qmaster and execd on free ports (SGE_QMASTER_PORT, SGE_EXECD_PORT), one queue `all.q` on this host. The
    host is named by what 127.0.0.1 resolves back to (its hostname an alias of it), so everything goes over
    loopback; only that host may submit, administer or execute. Yields the SGE_ROOT; skips, saying why, when Grid
    Engine cannot start here."""
    tools = ("sge_qmaster", "sge_execd", "qconf", "qstat", "spoolinit", "spooldefaults", "gethostbyaddr")
    missing = [t for t in tools if not (SGE_BIN / t).exists()] + [t for t in ("qsub", "qdel") if not shutil.which(t)]
    if missing:
        pytest.skip(f"Grid Engine is not installed ({', '.join(missing)} missing; apt-get install "
                    "gridengine-master gridengine-exec gridengine-client)")
    if os.geteuid() != 0:  # tried as nobody: "denied: request for user "nobody" does not match credentials ..."
        pytest.skip("Grid Engine's qmaster accepts an execd only when it runs as root")
    root = tmp_path_factory.mktemp("sge")
    monkeypatch.setenv("SGE_ROOT", str(root))
    monkeypatch.setenv("SGE_CELL", CELL)
    monkeypatch.setenv("SGE_QMASTER_PORT", str(_free_port()))
    monkeypatch.setenv("SGE_EXECD_PORT", str(_free_port()))
    host = _q("gethostbyaddr", "-name", "127.0.0.1", check=False).stdout.strip() or "localhost"
    try:
        try:
            _start_grid_engine(root / CELL, host)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            pytest.skip(f"Grid Engine did not start here: {' '.join(err.cmd)}: "
                        f"{(err.stderr or err.stdout or '').strip()}")
        yield root
    finally:  # the execd and its jobs, then the qmaster (its controlled shutdown takes ~10 s, for a spool thrown away)
        _stop(["-kej", host], root / CELL / "execd" / host / "execd.pid", 15)
        _stop(["-km"], root / CELL / "qmaster" / "qmaster.pid", 2)


def _start_grid_engine(cell: Path, host: str) -> None:
    # what Debian's init_cluster and Grid Engine's install_qmaster do, in cell/ instead of /var/lib/gridengine
    common, qmaster, execd = cell / "common", cell / "qmaster", cell / "execd"
    for folder in (common, qmaster, execd):
        folder.mkdir(parents=True)
    names = {socket.gethostname(), socket.gethostname().split(".")[0], socket.getfqdn()} - {host}
    (common / "host_aliases").write_text(" ".join([host, *sorted(names)]) + "\n")
    (common / "act_qmaster").write_text(host + "\n")
    spool = f"{common};{qmaster}"
    (common / "bootstrap").write_text(
        "admin_user none\ndefault_domain none\nignore_fqdn true\nspooling_method classic\nspooling_lib libspoolc\n"
        f"spooling_params {spool}\nbinary_path {SGE_BIN}\nqmaster_spool_dir {qmaster}\nsecurity_mode none\n"
        "listener_threads 2\nworker_threads 2\nscheduler_threads 1\njvm_threads 0\n")
    # Debian's global configuration, with root's jobs allowed, no mail, and loads reported every few seconds
    configuration = cell / "configuration"
    configuration.write_text(_set(Path("/usr/share/gridengine/default-configuration").read_text(),
                                  execd_spool_dir=str(execd), min_uid="0", min_gid="0", mailer="/bin/true",
                                  load_report_time="00:00:05", reporting_params="accounting=false reporting=false "
                                  "flush_time=00:00:15 joblog=false sharelog=00:00:00"))
    _q("spoolinit", "classic", "libspoolc", spool, "init")
    _q("spooldefaults", "configuration", str(configuration))
    _q("spooldefaults", "complexes", "/usr/share/gridengine/util/resources/centry")
    _q("spooldefaults", "usersets", "/usr/share/gridengine/util/resources/usersets")
    _q("spooldefaults", "managers", "root")
    _q("sge_qmaster")
    _wait(lambda: not _q("qconf", "-sh", check=False).returncode, lambda: f"sge_qmaster did not start here: "
          f"{_tail(qmaster / 'messages')}")
    _q("qconf", "-as", host)
    # schedule a job a second after it is submitted, not at the next 15 s interval
    sconf = cell / "sched_configuration"
    sconf.write_text(_set(_q("qconf", "-ssconf").stdout, schedule_interval="0:0:2", flush_submit_sec="1",
                          flush_finish_sec="1"))
    _q("qconf", "-Msconf", str(sconf))
    queue = cell / "all.q"
    queue.write_text(_set(_q("qconf", "-sq").stdout, qname="all.q", hostlist=host, pe_list="NONE",
                          slots=str(os.cpu_count() or 1), load_thresholds="NONE"))
    _q("qconf", "-Aq", str(queue))
    _q("sge_execd")

    def ready() -> bool:  # the queue instance loses its "unknown" state when the execd first reports
        state = _q("qstat", "-f", "-q", "all.q", check=False).stdout.splitlines()
        return any(line.startswith("all.q@") and len(line.split()) == 5 for line in state)

    _wait(ready, lambda: f"sge_execd did not start here: {_q('qstat', '-f', check=False).stdout.strip()}; "
          f"{_tail(execd / host / 'messages')}")


def _wait(done, why, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            pytest.skip(why())
        time.sleep(0.3)


def _set(text: str, **values: str) -> str:
    # an SGE object as qconf shows it ("name  value" lines), with some values replaced
    lines = [(line.split(maxsplit=1) or [""])[0] for line in text.splitlines()]
    return "".join(f"{key} {values[key]}\n" if key in values else line + "\n"
                   for key, line in zip(lines, text.splitlines()))


def _tail(path: Path) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-3:]) if path.is_file() else "no log"


@pytest.mark.slow
def test_recipe_on_grid_engine_through_dask_jobqueue_gives_the_local_shards(tmp_path, sge, dask_client):
    # -V: the job gets this environment (PYTHONPATH, the virtualenv), as Slurm's sbatch gives it by default
    same_shards_as_local(tmp_path, "sge", dask_client, 'queue = "all.q"\njob_extra_directives = ["-V"]\n'
                         'job_script_prologue = ["echo h_vmem: $(ulimit -v) KiB"]\n')
    # the worker ran as a Grid Engine job and said so, under the memory limit Grid Engine set from the recipe's
    logs = "".join(p.read_text() for p in (tmp_path / "jobs").glob("corpusforge.o*"))
    assert "Registered to:" in logs and f"h_vmem: {2 * 2**20} KiB" in logs
