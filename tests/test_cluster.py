"""Deployment through Dask's own projects: the recipe's [run.cluster], a scheduler file, dask-jobqueue against a
real single-node Slurm started here on loopback, the operator's DaskCluster resource, the run's log and dashboard."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cc_fixtures import make_inputs

from corpusforge import cli, cluster, pipeline, recipe
from corpusforge.errors import UserError

LANGS = '["en", "de", "ru", "zh", "nl"]'


def _recipe(tmp_path: Path, name: str, inputs, cluster_table: str = "", run_extra: str = "") -> Path:
    out = tmp_path / name
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[run]\noutput = "{out}"\n{run_extra}\n{cluster_table}\n[commoncrawl]\n'
                    f'inputs = {json.dumps([str(p) for p in inputs])}\noutput = "{out}/cc"\nlanguages = {LANGS}\n')
    return path


def _shards(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


def test_recipe_cluster_table_is_validated_with_the_key_named(tmp_path):
    path = _recipe(tmp_path, "r", ["crawl.warc.gz"], '[run.cluster]\nkind = "slurm"\ncores = 4\nprocesses = 2\nmaximum = 10\n'
                   'job_extra_directives = ["--constraint=skylake"]\n')
    run = recipe.load(path).run
    assert (run.cluster.kind, run.cluster.cores, run.cluster.maximum) == ("slurm", 4, 10)
    path.write_text(path.read_text().replace('"slurm"', '"lsf"'))
    with pytest.raises(recipe.RecipeError, match=r"\[run\] cluster kind: must be one of"):
        recipe.load(path)
    path.write_text(path.read_text().replace('"lsf"', '"pbs"').replace("processes = 2", "processes = 8"))
    with pytest.raises(recipe.RecipeError, match="processes: at most cores"):
        recipe.load(path)


# Each batch system's job script from the same recipe settings: its directives for queue, account, resources and
# walltime (Grid Engine's memory values take K/M/G, 1024-based, not Dask's "GiB", and SGE calls the account a
# project), the extra directives and the prologue.
JOB_SCRIPTS = {
    "slurm": ("long", "--constraint=skylake", ("#SBATCH -p long", "#SBATCH -A nlp", "#SBATCH -n 1",
                                              "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G", "#SBATCH -t 02:00:00",
                                              "#SBATCH --constraint=skylake")),
    "sge": ("long.q", "-V", ("#$ -q long.q", "#$ -P nlp", "#$ -l h_vmem=8192M", "#$ -l h_rt=02:00:00", "#$ -V")),
}


@pytest.mark.parametrize("kind", sorted(JOB_SCRIPTS))
def test_job_script_carries_the_recipe_settings(kind):
    queue, extra, directives = JOB_SCRIPTS[kind]
    config = cluster.ClusterConfig(kind=kind, cores=4, memory="8GiB", processes=2, walltime="02:00:00",
                                   queue=queue, account="nlp", job_extra_directives=[extra],
                                   job_script_prologue=["source ~/venv/bin/activate"], scheduler_host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0")
    script = cluster.job_script(config)
    for line in (*directives, "source ~/venv/bin/activate"):
        assert line in script, (line, script)
    # two worker processes of two threads and half the job's memory each, told where the scheduler is
    assert "--nthreads 2 --memory-limit 4.00GiB --nworkers 2" in script
    assert "tcp://127.0.0.1:" in script


def test_kubernetes_cluster_resource_and_a_clear_error_without_a_cluster(tmp_path, monkeypatch):
    config = cluster.ClusterConfig(kind="kubernetes", image="registry.example/corpusforge:0.1", minimum=2,
                                   memory_limit="6GiB", resources={"limits": {"memory": "8Gi", "cpu": "1"}})
    spec = cluster.kube_spec(config)
    worker = spec["spec"]["worker"]
    container = worker["spec"]["containers"][0]
    assert spec["kind"] == "DaskCluster" and worker["replicas"] == 2
    assert container["image"] == "registry.example/corpusforge:0.1"
    assert container["resources"] == {"limits": {"memory": "8Gi", "cpu": "1"}}
    assert container["args"][:5] == ["dask-worker", "--nthreads", "1", "--memory-limit", "6GiB"]
    with pytest.raises(UserError, match="needs \\[run.cluster\\] image"):
        cluster.kube_spec(cluster.ClusterConfig(kind="kubernetes"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))  # no cluster here: one line
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError, match="^kubernetes: could not create DaskCluster 'corpusforge': "):
        with cluster.connect(config):
            pass


def test_scheduler_file_run_logs_dashboard_and_progress(tmp_path, separate_cluster, capsys, monkeypatch):
    inputs, _ = make_inputs(tmp_path / "in")
    info = tmp_path / "scheduler.json"  # what `dask scheduler --scheduler-file` writes (the fixture's is inside)
    info.write_text(json.dumps({"address": separate_cluster, "type": "Scheduler"}))
    path = _recipe(tmp_path, "file", inputs)
    assert cli.main(["run", str(path), "--scheduler-file", str(info)]) == 0
    err = capsys.readouterr().err
    assert f"Dask: {separate_cluster}; dashboard: " in err and f"log: {tmp_path}/file/_run.log" in err
    log = (tmp_path / "file" / "_run.log").read_text()
    assert f"Dask: {separate_cluster}" in log
    assert "commoncrawl: 5/5 files, documents 9" in log and "s left" in log and "commoncrawl: finished: " in log
    monkeypatch.setattr(cluster, "SCHEDULER_FILE_WAIT_S", 1.0)
    assert cli.main(["run", str(path), "--scheduler-file", str(tmp_path / "none.json")]) == 2
    assert capsys.readouterr().err.strip() == (f"error: no scheduler file at {tmp_path}/none.json after 1 s: start "
                                               f"`dask scheduler --scheduler-file {tmp_path}/none.json` (or "
                                               "dask-mpi) first")


def test_dashboard_is_served_on_loopback_and_printed():
    from urllib.request import urlopen

    with cluster.connect(cluster.ClusterConfig(dashboard_address="127.0.0.1:0"), workers=1) as client:
        link = client.dashboard_link
        assert link.startswith("http://127.0.0.1:")
        with urlopen(link.replace("/status", "/info/main/workers.html"), timeout=30) as page:
            assert page.status == 200


def test_credentials_never_reach_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-123")
    with cluster.run_log(tmp_path) as path:
        logging.getLogger("corpusforge").info("reading https://user:pa55word@example.org/x with s3cr3t-value-123")
    text = path.read_text()
    assert "pa55word" not in text and "s3cr3t-value-123" not in text and "https://***@example.org/x" in text


# ------------------------------------------------------------------------------------------------ a real Slurm
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLURM_CONF = """ClusterName=corpusforge
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={d}/munge.socket
CredType=cred/munge
SlurmUser={user}
SlurmdUser={user}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
NodeName=cfnode NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=cfnode Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture
def slurm(tmp_path_factory, monkeypatch):
    """A single-node Slurm on loopback in a temp folder: munged, slurmctld and slurmd, cgroup-free, no accounting.
    Yields the folder; SLURM_CONF points sbatch/squeue at it. Skips, saying why, when Slurm cannot start here."""
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch") if not shutil.which(b)]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge)")
    d = Path("/tmp") / f"cf-slurm-{os.getpid()}-{time.monotonic_ns()}"  # short: a socket path has a length limit
    (d / "state").mkdir(parents=True)
    (d / "spool").mkdir()
    d.chmod(0o700)  # munged refuses a key or socket in a folder others can write
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    memory = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    conf = d / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=socket.gethostname().split(".")[0], ctld_port=_free_port(),
                                      d_port=_free_port(), d=d, user=os.environ.get("USER") or "root",
                                      cpus=os.cpu_count(), memory=memory))
    monkeypatch.setenv("SLURM_CONF", str(conf))
    procs = []
    try:
        subprocess.run(["munged", "--force", f"--socket={d}/munge.socket", f"--key-file={key}",
                        f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/munged.seed"],
                       check=True, capture_output=True, timeout=30)
        with open(d / "daemons.out", "wb") as out:
            procs.append(subprocess.Popen(["slurmctld", "-D", "-c", "-f", str(conf)], stdout=out, stderr=out))
            procs.append(subprocess.Popen(["slurmd", "-D", "-N", "cfnode", "-f", str(conf)], stdout=out, stderr=out))
        deadline = time.monotonic() + 30
        while True:
            state = subprocess.run(["sinfo", "-h", "-n", "cfnode", "-o", "%t"], capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                tail = (d / "daemons.out").read_text(errors="replace").strip().splitlines()[-3:]
                pytest.skip(f"Slurm did not start here: {state.stdout.strip() or state.stderr.strip()}; {tail}")
            time.sleep(0.5)
        yield d
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"munged did not start here: {err}; {getattr(err, 'stderr', b'')!r}")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if (d / "munged.pid").exists():
            subprocess.run(["munged", "--stop", f"--socket={d}/munge.socket"], capture_output=True, timeout=30)
        shutil.rmtree(d, ignore_errors=True)


def same_shards_as_local(tmp_path: Path, kind: str, dask_client, extra: str = "") -> None:
    """Run the test recipe through dask-jobqueue's `kind` cluster (one 1-core, 2 GiB job; `extra` adds recipe lines
    to `[run.cluster]`) and on `dask_client`'s local cluster, and check that both give the same shards."""
    inputs, _ = make_inputs(tmp_path / "in")
    local = _recipe(tmp_path, "local", inputs)
    on_jobs = _recipe(tmp_path, kind, inputs, f'[run.cluster]\nkind = "{kind}"\ncores = 1\nmemory = "2GiB"\n'
                      f'processes = 1\nwalltime = "00:10:00"\nscheduler_host = "127.0.0.1"\n'
                      f'dashboard_address = "127.0.0.1:0"\nlog_directory = "{tmp_path}/jobs"\n{extra}')
    assert pipeline.run_recipe(recipe.load(on_jobs))[0].counts["documents"] == 9
    rec = recipe.load(local)
    rec.run.scheduler = dask_client.scheduler.address
    pipeline.run_recipe(rec)
    assert _shards(tmp_path / kind / "cc") == _shards(tmp_path / "local" / "cc") != {}


@pytest.mark.slow
def test_recipe_on_slurm_through_dask_jobqueue_gives_the_local_shards(tmp_path, slurm, dask_client):
    same_shards_as_local(tmp_path, "slurm", dask_client)
    logs = list((tmp_path / "jobs").glob("*.err"))  # the worker ran as a Slurm job and said so in its log
    assert logs and "Starting Worker" in "".join(p.read_text() for p in logs)
