"""Every way of getting a command wrong ends in one clear line and a non-zero exit; an interrupted run says how to
resume and leaves no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cc_fixtures import Rec, pages, slow_html, write_warc

from corpusforge import cli, runtime

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLI = [sys.executable, "-m", "corpusforge.cli"]


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_unknown_stage_exits_2_and_leaves_run_json_alone(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    out = tmp_path / "build"
    recipe.write_text(f'[run]\noutput = "{out}"\n\n[commoncrawl]\ninputs = ["x.warc.gz"]\noutput = "{out}/cc"\n\n'
                      f'[dedup]\ninputs = ["{out}/cc"]\noutput = "{out}/dedup"\n')
    out.mkdir()
    (out / "_run.json").write_text('{"earlier": true}\n')
    assert cli.main(["run", str(recipe), "--only", "dedupe"]) == 2
    assert one_line_error(capsys) == (f"error: --only dedupe: no such stage in {recipe}; its stages: commoncrawl, "
                                      "dedup")
    assert (out / "_run.json").read_text() == '{"earlier": true}\n'


@pytest.mark.parametrize("args", [["--workers", "-1"], ["--workers", "0"], ["--workers", "two"]])
def test_bad_worker_counts_exit_2(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["commoncrawl", str(tmp_path / "x.warc.gz"), "-o", str(tmp_path / "out"), *args])
    assert exit_.value.code == 2
    assert "--workers" in one_line_error(capsys)


def test_validate_check_inputs(tmp_path, capsys):
    present = tmp_path / "a.warc.gz"
    present.write_bytes(b"")
    recipe = tmp_path / "r.toml"
    body = (f'[run]\noutput = "{tmp_path}/build"\n\n[commoncrawl]\ninputs = ["{present}", "{tmp_path}/none/*.warc.gz",'
            f' "{tmp_path}/missing.warc.gz"]\noutput = "{tmp_path}/build/cc"\n\n'
            f'[dedup]\ninputs = ["{tmp_path}/build/cc"]\noutput = "{tmp_path}/build/dedup"\n')
    recipe.write_text(body)
    assert cli.main(["validate", str(recipe)]) == 0  # without the flag only the recipe is checked
    capsys.readouterr()
    assert cli.main(["validate", str(recipe), "--check-inputs"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: [commoncrawl] {tmp_path}/none/*.warc.gz: glob matches nothing",
        f"error: [commoncrawl] {tmp_path}/missing.warc.gz: does not exist"]  # build/cc: made by the run
    recipe.write_text(body.replace(f', "{tmp_path}/none/*.warc.gz", "{tmp_path}/missing.warc.gz"', ""))
    assert cli.main(["validate", str(recipe), "--check-inputs"]) == 0


@pytest.mark.parametrize("spec,message", [
    ("missing.warc.gz", "no such input: {d}/missing.warc.gz"),
    ("none-*.warc.gz", "no input matches '{d}/none-*.warc.gz'"),
    ("folder", "{d}/folder is a folder; give the WARC files in it, e.g. '{d}/folder/*.warc.gz'"),
])
def test_inputs_that_are_not_there_are_one_line(tmp_path, capsys, spec, message):
    (tmp_path / "folder").mkdir()
    spec = spec if "://" in spec else str(tmp_path / spec)
    assert cli.main(["commoncrawl", spec, "-o", str(tmp_path / "out")]) == 2
    assert one_line_error(capsys) == "error: " + message.format(d=tmp_path)


def test_a_missing_fsspec_backend_names_the_extra(tmp_path, capsys, monkeypatch):
    from fsspec.registry import _registry  # classes imported so far (the `registry` view is read-only)

    monkeypatch.setitem(sys.modules, "s3fs", None)  # as on a machine without the s3 extra: importing it fails
    monkeypatch.delitem(_registry, "s3", raising=False)
    assert cli.main(["commoncrawl", "s3://bucket/crawl.warc.gz", "-o", str(tmp_path / "out")]) == 2
    assert one_line_error(capsys) == ("error: s3:// inputs need a package that is not installed: pip install "
                                      "'corpusforge[s3]' (installs s3fs)")


def test_a_run_whose_inputs_all_failed_exits_1(tmp_path, capsys, dask_client):
    for name in ("a.warc.gz", "b.warc.gz"):
        (tmp_path / name).write_bytes(b"this is not a WARC file at all\n" * 10)
    code = cli.main(["commoncrawl", str(tmp_path / "a.warc.gz"), str(tmp_path / "b.warc.gz"), "-o",
                     str(tmp_path / "out"), "--scheduler", dask_client.scheduler.address])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: commoncrawl: every input failed (see its _errors.jsonl)")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_ends_cleanly_and_the_same_command_resumes(tmp_path, sig):
    warc = tmp_path / "in.warc.gz"
    write_warc(warc, [Rec("http://example.org/slow", slow_html(40_000).encode())] + pages())
    cmd = CLI + ["commoncrawl", str(warc), "-o", str(tmp_path / "out"), "--workers", "1", "--timeout", "600"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mark = tmp_path / "out" / runtime.STAGE_FILE
    deadline = time.monotonic() + 120
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(3)  # the task is on the slow page
    assert proc.poll() is None
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-6000:]
    assert err.strip().splitlines()[-1] == "interrupted; run the same command again to resume"
    assert "Traceback" not in err and "leaked" not in err, err
    assert json.loads(mark.read_text())["complete"] is False
    again = subprocess.run(cmd[:-1] + ["2"], env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "out" / runtime.SUMMARY_FILE).read_text())["counts"]["documents"] >= 5


def test_version_and_the_stage_names_in_run_help(capsys):
    """`corpusforge --version` prints the installed version; `run --help` names every stage `--only` takes."""
    from importlib.metadata import version

    from corpusforge.recipe import STAGES

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"corpusforge {version('corpusforge')}\n"
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--only STAGE" in help_text and ", ".join(s.name for s in STAGES) in help_text


def test_a_command_whose_extra_is_not_installed_names_the_extra(tmp_path):
    """The data pipeline installs without PyTorch (`pip install corpusforge`); `train` without it is one line
    naming the extra, not a traceback. torch is hidden from a fresh interpreter by an import hook."""
    hide = ("import sys\n"
            "class Hide:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Hide())\n"
            "from corpusforge import cli\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    text = tmp_path / "t.txt"
    text.write_text("some text\n" * 100)
    proc = subprocess.run([sys.executable, "-c", hide, "train", "pretrain", "--text", str(text), "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "error: this command needs torch: pip install 'corpusforge[train]'\n"
