"""Helpers for the feedback tests: a tiny run to sample from, the real `corpusforge feedback serve` process on
loopback, and a throwaway PostgreSQL server."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import torch

ROOT = Path(__file__).resolve().parent.parent
CHARS = sorted(set(string.ascii_letters + string.digits + " .,;:!?'-\n"))


def tiny_run(run_dir: Path, *, seed: int = 0, n_embd: int = 32, block_size: int = 256) -> Path:
    """A run folder with a small randomly initialized character-level GPT (best.safetensors + tokenizer.json):
    what `feedback serve` and `train reward` load, built in milliseconds."""
    from corpusforge.runtime import write_text_atomic
    from corpusforge.trainer import checkpoint
    from corpusforge.trainer.data.chars import char_tokenizer
    from corpusforge.trainer.model import GPT, GPTConfig

    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = char_tokenizer(CHARS)
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=block_size, n_layer=2, n_head=2,
                       n_embd=n_embd)
    net = GPT(config)
    checkpoint.save(checkpoint.path_in(run_dir, "best"), net, None,
                    {"model_config": dataclasses.asdict(config), "eot_id": 0, "step": 0})
    write_text_atomic(run_dir / "tokenizer.json", tokenizer.to_str())
    return run_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path


@contextlib.contextmanager
def serve(run_dir: Path, prompts: Path, db: str, *extra: str, host: str = "127.0.0.1",
          token: str | None = None) -> Server:
    """`corpusforge feedback serve` as a separate process on a free port; yields once /api/info answers."""
    port = free_port()
    log = Path(str(prompts) + f".{port}.log")
    args = [sys.executable, "-m", "corpusforge.cli", "feedback", "serve", str(run_dir), "--prompts", str(prompts),
            "--db", db, "--host", host, "--port", str(port), *extra]
    if token:
        args += ["--token", token]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://{host}:{port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + 60
    try:
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if requests.get(f"{url}/api/info", headers=headers, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "server did not start:\n" + log.read_text()
            time.sleep(0.1)
        yield Server(url, process, log)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's initdb/pg_ctl (Debian keeps them off PATH), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@contextlib.contextmanager
def postgres():
    """A throwaway PostgreSQL server listening only on a socket in a temporary folder; yields its URL. initdb
    refuses to run as root, so as root the server runs as `nobody` (in a folder of its own under the system temp
    folder, since pytest's are private to root)."""
    bindir = postgres_bin()
    tmp = Path(tempfile.mkdtemp(prefix="corpusforge-pg-"))
    data, sock = tmp / "pgdata", tmp / "pgsock"
    sock.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "nobody", "--"]
        for p in (tmp, sock):
            os.chmod(p, 0o777)
    password_free = ["--auth=trust", "--username=corpusforge", "--encoding=UTF8", "--no-sync"]
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), *password_free], check=True,
                   capture_output=True)
    log = tmp / "pg.log"
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
                    f"-c listen_addresses='' -c unix_socket_directories='{sock}' -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://corpusforge@/postgres?host={sock}"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
