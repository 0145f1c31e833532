"""Where the Dask workers come from: a LocalCluster, a running scheduler (address or Dask's scheduler file), a batch
system through dask-jobqueue (Slurm, PBS, SGE; adaptive between a minimum and a maximum number of jobs), or
Kubernetes through the dask-kubernetes operator. Never a home-made launcher: each deployer is Dask's own project,
configured from the recipe's `[run.cluster]` table (see docs/cluster.md).

`connect` is the one place a Dask client is opened; `runtime.dask_client` delegates here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from corpusforge.errors import UserError

log = logging.getLogger("corpusforge")

Kind = Literal["local", "slurm", "pbs", "sge", "kubernetes"]
JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}
LOG_FILE = "_run.log"
SCHEDULER_FILE_WAIT_S = 60.0  # a batch script may start the scheduler in the background just before the run
# Memory one task of a stage claims on its worker: the stage's measured peak per worker process less an idle worker
# (bench/scale.py, docs/cluster.md's table), rounded up with room. Workers advertise their memory limit as the Dask
# resource "memory" (RESOURCE); a worker runs at most memory_limit / claim of a stage's tasks at once.
TASK_MEMORY = {"commoncrawl": "256MiB", "dedup": "512MiB", "decontaminate": "512MiB", "quality": "512MiB",
               "mix": "512MiB", "wikipedia": "256MiB", "books": "256MiB", "webtext2": "256MiB"}
RESOURCE = "memory"
TASK_MEMORY_CONFIG = "corpusforge.task-memory"  # [run.cluster] task_memory, in Dask's config while a client is open


def _help(text: str, default: Any = None, factory: Any = None) -> Any:
    """A dataclass field with its help text kept as data (the CLI and the docs read it)."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": text})
    return dataclasses.field(default=default, metadata={"help": text})


@dataclasses.dataclass
class ClusterConfig:
    """`[run.cluster]`: which Dask deployer starts the workers, and how large they are."""

    kind: Kind = _help("local (a LocalCluster here), slurm, pbs, sge (dask-jobqueue) or kubernetes (the "
                       "dask-kubernetes operator); ignored when a scheduler address or file is given", "local")
    dashboard_address: str = _help("where the scheduler serves its dashboard (bokeh); loopback by default",
                                   "127.0.0.1:8787")
    threads_per_worker: int = _help("threads in each worker process (stages hold the GIL: keep 1)", 1)
    memory_limit: str = _help("memory each worker process may use before its nanny restarts it, e.g. '4GiB' "
                              "(local: 'auto' divides the machine; batch systems: memory / processes)", "auto")
    task_memory: dict[str, str] = _help(
        "memory one task of a stage claims, by stage, e.g. {dedup = '2GiB'}: a worker runs at most memory_limit / "
        "claim of that stage's tasks at once, and a stage whose tasks fit on no worker stops before it starts "
        "(defaults: docs/cluster.md)", factory=dict)
    max_tries: int = _help("times a task is tried on a worker that dies under it (killed for memory, crashed) "
                           "before its input is reported as poison and skipped", 3)
    cores: int = _help("batch system: cores per job", 8)
    memory: str = _help("batch system: memory per job, e.g. '32GiB'", "32GiB")
    processes: int = _help("batch system: worker processes per job (each gets cores/processes threads)", 8)
    walltime: str = _help("batch system: time limit per job, e.g. '24:00:00'", "24:00:00")
    queue: str | None = _help("batch system: partition (Slurm) or queue (PBS, SGE)")
    account: str | None = _help("batch system: account (Slurm, PBS) or project (SGE) charged")
    job_extra_directives: list[str] = _help("batch system: extra header lines, e.g. ['--constraint=skylake']",
                                            factory=list)
    job_script_prologue: list[str] = _help("batch system: shell lines run before the worker starts, e.g. "
                                           "['source ~/venv/bin/activate']", factory=list)
    interface: str | None = _help("batch system: network interface the workers listen on, e.g. 'ib0'")
    scheduler_host: str | None = _help("batch system: address the scheduler (here) listens on; it must be "
                                       "reachable from the compute nodes (default: this host's address)")
    local_directory: str | None = _help("batch system and kubernetes: scratch folder for spilled data")
    log_directory: str | None = _help("batch system: folder for the jobs' stdout/stderr")
    minimum: int = _help("jobs (batch system) or worker pods (kubernetes) kept however idle", 1)
    maximum: int = _help("most jobs or worker pods adaptive scaling may start (= minimum: a fixed size)", 1)
    image: str | None = _help("kubernetes: a container image with corpusforge installed")
    namespace: str | None = _help("kubernetes: namespace (default: the current context's)")
    name: str = _help("kubernetes: the DaskCluster resource's name; batch system: the job name", "corpusforge")
    resources: dict[str, Any] = _help("kubernetes: worker container resources, e.g. {limits = {memory = '8Gi'}}",
                                      factory=dict)
    env: dict[str, str] = _help("kubernetes: environment of the scheduler and workers (credentials belong in "
                                "Secrets, not here)", factory=dict)

    def validate(self) -> None:
        for name in ("threads_per_worker", "cores", "processes", "max_tries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.minimum < 0 or self.maximum < max(self.minimum, 1):
            raise ValueError(f"maximum: must be at least minimum and 1, got minimum {self.minimum}, "
                             f"maximum {self.maximum}")
        if self.processes > self.cores:
            raise ValueError(f"processes: at most cores ({self.cores}), got {self.processes}")


def _dask_settings(config: ClusterConfig) -> dict[str, Any]:
    # Read by the scheduler when it starts; Dask counts the deaths allowed before the last try. Dask's idle work (the
    # workers' stack sampler for the dashboard's profile, a 20 ms event-loop tick, a 0.5 s system monitor) cost 0.12
    # CPU-s per second on 2 local workers, 0.03 with these (bench/commoncrawl.py); a LocalCluster's nannies pass them on.
    return {"distributed.scheduler.allowed-failures": config.max_tries - 1,
            "distributed.worker.profile.enabled": False, "distributed.admin.tick.interval": "1s",
            "distributed.admin.system-monitor.interval": "2s"}


def _bytes(size: str) -> int:
    from dask.utils import parse_bytes

    return int(parse_bytes(size))


def task_resources(client: Any, stage: str) -> dict[str, int] | None:
    """The Dask resources each task of `stage` claims (`{"memory": bytes}`), or None where there is nothing to
    claim: no claim for the stage, or workers that advertise no memory (started by hand without `--resources`).
    A claim larger than every worker's memory would never run: a UserError, before any task starts."""
    import dask

    size = dask.config.get(TASK_MEMORY_CONFIG, {}).get(stage) or TASK_MEMORY.get(stage)
    have = [w.get("resources", {}).get(RESOURCE) for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    have = [h for h in have if h]
    if size is None or not have:
        return None
    need = _bytes(size)
    if need > max(have):
        from dask.utils import format_bytes

        raise UserError(f"{stage}: each task claims {format_bytes(need)} ([run.cluster] task_memory) but the "
                        f"largest worker has {format_bytes(max(have))} (memory_limit): raise memory_limit or lower "
                        "the claim")
    return {RESOURCE: need}


def job_script(config: ClusterConfig) -> str:
    """The batch script dask-jobqueue submits for one job of `config` (to check before a long run)."""
    with _jobqueue_cluster(config) as cluster:
        return cluster.job_script()


def make_cluster(config: ClusterConfig, workers: int | None = None) -> Any:
    """Start the cluster `config.kind` names (its scheduler runs here, in this process, except on Kubernetes) and
    scale it: `workers` processes for a LocalCluster; adaptive between `minimum` and `maximum` jobs or pods."""
    import dask

    with dask.config.set(_dask_settings(config)):
        if config.kind == "local":
            from distributed import LocalCluster

            from distributed.worker_memory import parse_memory_limit

            n = workers or os.cpu_count() or 1
            limit = parse_memory_limit(config.memory_limit, 1, n, logger=log)  # "auto": the machine's / n
            return LocalCluster(n_workers=n, threads_per_worker=config.threads_per_worker, processes=True,
                                memory_limit=limit, dashboard_address=config.dashboard_address,
                                silence_logs=logging.ERROR, resources={RESOURCE: limit} if limit else None)
        if config.kind in JOBQUEUE:
            cluster = _jobqueue_cluster(config)
        else:
            cluster = _kube_cluster(config)
    if config.maximum > config.minimum:
        kwargs = ({"minimum_jobs": config.minimum, "maximum_jobs": config.maximum} if config.kind in JOBQUEUE
                  else {"minimum": config.minimum, "maximum": config.maximum})
        cluster.adapt(**kwargs)
    elif config.kind in JOBQUEUE:
        cluster.scale(jobs=config.minimum)
    return cluster


def _jobqueue_cluster(config: ClusterConfig) -> Any:
    try:
        import dask_jobqueue
    except ImportError:
        raise UserError(f"cluster kind {config.kind} needs dask-jobqueue: pip install "
                        "'corpusforge[distributed]'") from None
    cls = getattr(dask_jobqueue, JOBQUEUE[config.kind])
    kwargs: dict[str, Any] = dict(
        cores=config.cores, memory=config.memory, processes=config.processes, walltime=config.walltime,
        queue=config.queue, account=config.account, job_extra_directives=config.job_extra_directives,
        job_script_prologue=config.job_script_prologue, interface=config.interface, job_name=config.name,
        local_directory=config.local_directory, log_directory=config.log_directory,
        scheduler_options={k: v for k, v in (("dashboard_address", config.dashboard_address),
                                             ("host", config.scheduler_host)) if v},
        worker_extra_args=["--resources", f"{RESOURCE}={_bytes(config.memory) // config.processes}"])
    if config.kind == "sge":  # no --mem: memory is a resource, in K/M/G (qsub refuses "GiB"); the account is a project
        kwargs["resource_spec"] = f"h_vmem={_bytes(config.memory) // 2**20}M"
        kwargs["project"] = kwargs.pop("account")
    return cls(**{k: v for k, v in kwargs.items() if v is not None})


def kube_spec(config: ClusterConfig) -> dict[str, Any]:
    """The DaskCluster resource the operator is given: Dask's own template, with our image, resources, env and
    worker flags (one thread and the memory limit per worker, like a LocalCluster)."""
    from dask_kubernetes.operator import make_cluster_spec

    if not config.image:
        raise UserError("cluster kind kubernetes needs [run.cluster] image: a container image with corpusforge "
                        "installed (see docs/cluster.md)")
    command = (f"dask-worker --nthreads {config.threads_per_worker} --memory-limit {config.memory_limit}"
               + (f" --local-directory {config.local_directory}" if config.local_directory else "")
               + (f" --resources {RESOURCE}={_bytes(config.memory_limit)}" if config.memory_limit != "auto" else ""))
    return make_cluster_spec(name=config.name, image=config.image, n_workers=config.minimum,
                             resources=config.resources or None, env=config.env or None, worker_command=command)


def _kube_cluster(config: ClusterConfig) -> Any:
    try:
        from dask_kubernetes.operator import KubeCluster
    except ImportError:
        raise UserError("cluster kind kubernetes needs dask-kubernetes: pip install "
                        "'corpusforge[kubernetes]'") from None
    spec = kube_spec(config)
    try:
        return KubeCluster(custom_cluster_spec=spec, namespace=config.namespace, shutdown_on_close=True)
    except Exception as err:  # no kube config, no operator, refused: one line, the usual way
        raise UserError(f"kubernetes: could not create DaskCluster {config.name!r}: {type(err).__name__}: "
                        f"{redact(str(err)).splitlines()[0] if str(err) else ''}") from None


@contextlib.contextmanager
def connect(config: ClusterConfig | None = None, *, scheduler: str | None = None, scheduler_file: str | None = None,
            workers: int | None = None, console: Any = None) -> Iterator[Any]:
    """A `distributed.Client`: to `scheduler` (tcp://host:port) or the scheduler `scheduler_file` names (written by
    `dask scheduler --scheduler-file`, dask-mpi, a batch script) when given; else to a new cluster of
    `config.kind`. The dashboard address is printed (to `console`) and logged; the cluster closes with the block."""
    from distributed import Client

    import dask

    config = config or ClusterConfig()
    if scheduler_file and not scheduler:
        _wait_for(Path(scheduler_file).expanduser())
    with contextlib.ExitStack() as stack:
        stack.enter_context(dask.config.set({TASK_MEMORY_CONFIG: dict(config.task_memory)}))
        try:
            if scheduler or scheduler_file:
                client = stack.enter_context(Client(scheduler, scheduler_file=scheduler_file, timeout="30s"))
            else:
                cluster = stack.enter_context(make_cluster(config, workers))
                client = stack.enter_context(Client(cluster))
        except (OSError, TimeoutError) as err:
            where = scheduler or (f"the scheduler in {scheduler_file}" if scheduler_file else config.kind)
            raise UserError(f"could not reach {where}: {type(err).__name__}: {err}") from None
        # A scheduler started here serves no dashboard without bokeh (the distributed extra installs it).
        served = scheduler or scheduler_file or importlib.util.find_spec("bokeh") is not None
        message = (f"Dask: {client.scheduler.address}; dashboard: "
                   f"{client.dashboard_link if served else 'none (pip install bokeh)'}")
        log.info(message)
        if console is not None:
            console.print(message, highlight=False, soft_wrap=True)
        yield client


def _wait_for(path: Path) -> None:
    # distributed would wait for a missing scheduler file forever
    deadline = time.monotonic() + SCHEDULER_FILE_WAIT_S
    while not path.is_file():
        if time.monotonic() > deadline:
            raise UserError(f"no scheduler file at {path} after {SCHEDULER_FILE_WAIT_S:.0f} s: start "
                            f"`dask scheduler --scheduler-file {path}` (or dask-mpi) first")
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------------- the run's log
_SECRET_ENV = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|SESSION|_KEY$)", re.I)
_USERINFO = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+@")


def redact(text: str) -> str:
    """`text` without credentials: URL user:password parts and the values of secret-looking environment
    variables (AWS_SECRET_ACCESS_KEY, *_TOKEN, ...) are replaced by `***`."""
    text = _USERINFO.sub("***@", text)
    for name, value in os.environ.items():
        if len(value) >= 6 and _SECRET_ENV.search(name) and value in text:
            text = text.replace(value, "***")
    return text


class _LogFile(logging.FileHandler):
    """The run's log file. Its level stays NOTSET: LocalCluster(silence_logs=...) sets the level of every handler
    on the `distributed` logger, which would hide the lost-worker warnings from the log."""

    def setLevel(self, level: Any) -> None:
        pass


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


@contextlib.contextmanager
def run_log(folder: str | os.PathLike) -> Iterator[Path]:
    """Append this run's log (stage progress with ETA, summaries, lost workers and Dask's warnings) to
    `folder/_run.log` for the block, with credentials redacted; yields the log's path. For an object store folder
    the log is kept in this machine's temporary folder (corpusforge/<hash of the URL>_run.log, the same file for a
    resumed run, never in the working directory) and uploaded to `folder/_run.log` at the end."""
    import hashlib
    import tempfile

    from corpusforge import storage

    remote = storage.is_url(folder)  # an object cannot be appended to: log here, upload it at the end
    key = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir(), "corpusforge", f"{key}{LOG_FILE}") if remote else Path(folder) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _LogFile(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Redact())
    loggers = [(logging.getLogger("corpusforge"), logging.INFO), (logging.getLogger("distributed"), logging.WARNING)]
    levels = [lg.level for lg, _ in loggers]
    for lg, level in loggers:
        lg.addHandler(handler)
        if lg.getEffectiveLevel() > level:
            lg.setLevel(level)
    try:
        yield path
    finally:
        for (lg, _), level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.close()
        if remote:
            with storage.upload_atomic(storage.join(folder, LOG_FILE)) as tmp:
                shutil.copyfile(path, tmp)
