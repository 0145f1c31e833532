"""corpusforge.runtime: atomic writes, shards that are byte-identical wherever they are written, resume, and
map_files reporting a crashed task while the other files go on (on a real LocalCluster)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import cloudpickle
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from corpusforge import runtime
from corpusforge.resume import resume_or_none
from corpusforge.runtime import FileReport, ShardWriter, atomic_path, output_name, read_report
from corpusforge.tasks import map_files
from corpusforge.runtime import RunContext

# The tasks below run on Dask workers, which cannot import this test module: ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def row(i: int) -> dict:
    return {"id": f"{i:032x}", "source": "commoncrawl", "text": f"text {i}", "lang": "en", "lang_score": 0.9,
            "origin_file": "in.warc.gz", "origin_offset": i * 100}


def write_rows_task(item: str, out_dir: str, config: dict) -> FileReport:
    """A per-file task: `config["rows"][item]` rows into one shard; items named `crash*` raise half-way."""
    out = Path(out_dir) / output_name(item)
    done = resume_or_none(out, item)
    if done is not None:
        return done
    report = FileReport(input=item, output=str(out))
    with ShardWriter(out, row_group_rows=2) as writer:
        for i in range(config["rows"][item]):
            if item.startswith("crash") and i == 3:
                raise RuntimeError("disk on fire")
            writer.write_rows([row(i)])
            report.count("documents")
        report.seconds = 0.123
        writer.set_report(report)
    return report


def test_atomic_path_publishes_only_on_success(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            assert tmp.name.startswith(".") and tmp.name.endswith(".tmp")
            raise ValueError("crash")
    assert list((tmp_path / "sub").iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and list((tmp_path / "sub").iterdir()) == [target]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_writer(tmp_path):
    """A writer SIGKILLed mid-write (as a lost Dask worker is) cannot clean up; the next write of the same file
    does, and leaves other files' temporaries alone."""
    import signal
    import subprocess

    target = tmp_path / "shard.parquet"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom corpusforge.runtime import atomic_path\n"
         f"with atomic_path({str(target)!r}) as tmp:\n"
         "    tmp.write_bytes(b'half a shard')\n    print(tmp, flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    debris = Path(child.stdout.readline().strip())
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    other = tmp_path / ".other.parquet.host-1.tmp"
    other.write_bytes(b"someone else's")
    assert debris.exists() and not target.exists()

    with atomic_path(target) as tmp:
        tmp.write_bytes(b"a whole shard")
    assert not debris.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.parquet.host-1.tmp", "shard.parquet"]


def test_shard_writer_leaves_nothing_when_the_block_fails(tmp_path):
    out = tmp_path / "x.parquet"
    with pytest.raises(RuntimeError):
        with ShardWriter(out, row_group_rows=2) as writer:
            writer.write_rows([row(i) for i in range(5)])  # row groups already on disk under the temp name
            assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_shards_are_byte_identical_wherever_and_whenever_written(tmp_path):
    paths = [tmp_path / d / "shard.parquet" for d in ("a", "b")]
    for n, path in enumerate(paths):
        report = FileReport(input="in.warc.gz", output=str(path), counts={"documents": 3}, seconds=1.5 + n)
        with ShardWriter(path) as writer:
            writer.write_rows([row(i) for i in range(3)])
            writer.set_report(report)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    back = read_report(paths[1])
    # The writer adds what it wrote per source (the corpus funnel's counts): 3 documents of 6 bytes ("text 0"...).
    assert back.input == "in.warc.gz" and back.output == str(paths[1])
    assert back.counts == {"documents": 3, "out.commoncrawl.documents": 3, "out.commoncrawl.bytes": 18}
    assert resume_or_none(paths[1], "in.warc.gz").resumed
    assert resume_or_none(paths[1], "other.warc.gz") is None  # a shard of another input is not a resume
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    assert read_report(tmp_path / "junk.parquet") is None


def test_output_names_do_not_collide():
    names = {output_name(p) for p in ("a/x.warc.gz", "b/x.warc.gz", "http://h/a/x.warc.gz", "x.warc")}
    assert len(names) == 4 and all(n.startswith("x-") and n.endswith(".parquet") for n in names)


def test_map_files_reports_a_crashed_task_and_finishes_the_rest(tmp_path, dask_client):
    items = ["one", "crash-two", "three"]
    config = {"rows": {"one": 5, "crash-two": 6, "three": 1}}
    console = Console(file=io.StringIO(), width=200)
    summary, reports = map_files(write_rows_task, items, tmp_path, config, stage="unit",
                                 ctx=RunContext(client=dask_client, console=console))
    assert [r.input for r in reports] == items
    assert summary.files == 3 and summary.errors == 1
    assert summary.counts == {"documents": 6, "out.commoncrawl.documents": 6, "out.commoncrawl.bytes": 36}
    assert reports[1].errors[0]["reason"] == "task failed: RuntimeError: disk on fire"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [output_name("one"), output_name("three"), runtime.ERRORS_FILE, runtime.SUMMARY_FILE, runtime.STAGE_FILE])
    assert pq.read_table(tmp_path / output_name("one")).num_rows == 5
    errors = [json.loads(line) for line in (tmp_path / runtime.ERRORS_FILE).read_text().splitlines()]
    assert [(e["file"], e["stage"]) for e in errors] == [("crash-two", "unit")]
    assert json.loads((tmp_path / runtime.SUMMARY_FILE).read_text())["files"] == 3
    # Same client, same call again: finished files are resumed (not served from the first call's futures).
    again, reports = map_files(write_rows_task, items, tmp_path, config, stage="unit",
                               ctx=RunContext(client=dask_client, console=console))
    assert [r.resumed for r in reports] == [True, False, True] and again.resumed_files == 2
