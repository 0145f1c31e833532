"""What a re-run may keep and a reader may trust: each output file's fingerprint (the settings that shape it and
its inputs' identities), a whole-folder stage's fingerprint, and the completion marks (`_stage.json`) a stage sets
when it starts and when it finishes.

`resume(out_path, item, config)` says whether a finished output is still current (a re-run keeps it) or why it is
made again; `stage_fingerprint` / `finished_stage` do the same for a stage whose output is one folder (tokenizer,
mix, decontamination); `begin_stage` / `end_stage` / `require_complete` keep readers off a folder still being
written; `force_recompute` (`--force`) forgets every fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from corpusforge import storage
from corpusforge.errors import UserError
from corpusforge.runtime import (FINGERPRINTS_DIR, STAGE_FILE, SUMMARY_FILE, FileReport, read_report,
                                 write_json_atomic)

# Config fields that do not shape an output file (which inputs a stage reads is decided by the item itself).
_NOT_SHAPING = ("inputs", "output", "limit_files", "task_bytes", "crawls", "crawl_index", "sample_files",
                "sample_seed")


def _stable(value: Any) -> Any:
    """`value` as plain JSON data with a stable form (dataclasses as dicts, functions by name)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _stable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name not in _NOT_SHAPING}
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_stable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def settings_digest(config: Any) -> str:
    """A digest of the settings in `config` that shape a stage's outputs (not its inputs list or output folder)."""
    data = _stable(config)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclasses.dataclass
class Fingerprint:
    """What an output file is made from: the digest of the settings that shape it and the identity of each input.
    `done`: the finished output's report when it matches (resume); `redone`: why a finished output is stale."""

    settings: str
    inputs: dict[str, dict[str, Any]]
    done: FileReport | None = None
    redone: str | None = None

    def save(self, out_path: str | os.PathLike) -> None:
        write_json_atomic(_fingerprint_path(out_path), {"settings": self.settings, "inputs": self.inputs})

    def changes(self, old: dict[str, Any]) -> str | None:
        """What differs from the fingerprint `old` was saved as, in words; None when nothing does."""
        if old.get("settings") != self.settings:
            return "its settings changed"
        changed = [path for path, ident in self.inputs.items() if old.get("inputs", {}).get(path) != ident]
        if changed or set(old.get("inputs", {})) != set(self.inputs):
            return f"input changed: {', '.join(changed) or 'the list of inputs'}"
        return None


def _fingerprint_path(out_path: str | os.PathLike) -> Any:
    return storage.join(storage.parent(out_path), FINGERPRINTS_DIR, f"{storage.name(out_path)}.json")


def resume(out_path: str | os.PathLike, item: str, config: Any, files: Sequence[str] | None = None) -> Fingerprint:
    """The fingerprint of the output `out_path` of `item` made with `config` (the input files are `files`, by
    default the item's lines). Its `done` is the report of a finished output that is still current (marked
    resumed); when a finished output was made from other settings or inputs, `redone` says which, and it is made
    again. Pass the fingerprint to ShardWriter, which saves it beside the finished file."""
    files = list(files) if files is not None else str(item).split("\n")
    fp = Fingerprint(settings=settings_digest(config), inputs={f: storage.identity(f) for f in files})
    if not storage.exists(out_path):
        return fp
    report = read_report(out_path)
    if report is None or report.input != str(item):
        return fp
    try:
        old = json.loads(storage.read_text(_fingerprint_path(out_path)))
    except (OSError, ValueError):
        fp.redone = "no fingerprint (made before fingerprints, or interrupted)"
        return fp
    fp.redone = fp.changes(old)
    if fp.redone is None:
        report.resumed = True
        fp.done = report
    return fp


def stage_fingerprint(config: Any, files: Iterable[str], *extra: str) -> str:
    """A digest of a whole-folder stage's config (without its output folder), its input files (path, size, mtime)
    and `extra` strings: equal fingerprints mean its finished output is still current (see `finished_stage`)."""
    h = hashlib.sha256()
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "output"}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in files:
        h.update(f"\0{path}\0{json.dumps(storage.identity(path), sort_keys=True)}".encode())
    for item in extra:
        h.update(f"\0{item}".encode())
    return h.hexdigest()


def finished_stage(out_dir: str | os.PathLike, fp: str, *outputs: str) -> dict[str, Any] | None:
    """The `_summary.json` of `out_dir` if an earlier run with `stage_fingerprint` `fp` finished there and its
    `outputs` still exist, else None."""
    try:
        summary = json.loads(storage.read_text(storage.join(out_dir, SUMMARY_FILE)))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if summary.get("extra", {}).get("fingerprint") != fp or not all(storage.exists(storage.join(out_dir, o))
                                                                     for o in outputs):
        return None
    return summary


_FORCE = False


def force_recompute(on: bool = True) -> None:
    """From now on (in this client process) stages forget their outputs' fingerprints and make everything again
    (`--force`)."""
    global _FORCE
    _FORCE = on


def end_stage(out_dir: str | os.PathLike, stage: str) -> None:
    """Mark `out_dir` complete: readers take it from now on (runtime.finish_stage, once the summary is written)."""
    write_json_atomic(storage.join(out_dir, STAGE_FILE), {"stage": stage, "complete": True})


def begin_stage(out_dir: str | os.PathLike, stage: str) -> None:
    """Mark `out_dir` as being written by `stage` (readers refuse it until `end_stage` marks it complete); under
    `--force` (force_recompute) forget every output's fingerprint there, so that everything is made again."""
    storage.makedirs(out_dir)
    if _FORCE:
        storage.remove_tree(storage.join(out_dir, FINGERPRINTS_DIR))
    write_json_atomic(storage.join(out_dir, STAGE_FILE), {"stage": stage, "complete": False})


def require_complete(folder: str | os.PathLike) -> None:
    """Refuse (IncompleteStage) a folder whose stage started but did not finish: killed, failed or still running."""
    try:
        mark = json.loads(storage.read_text(storage.join(folder, STAGE_FILE)))
    except FileNotFoundError:
        return  # not a stage's folder: shards the user put there
    except ValueError:
        mark = {}
    if not mark.get("complete"):
        raise IncompleteStage(f"{folder}: the {mark.get('stage', 'stage')} stage did not finish writing it (killed "
                              "or still running); run that stage again first")


class IncompleteStage(UserError, ValueError):
    """A folder is the output of a stage that did not finish (see require_complete)."""


def resume_or_none(out_path: str | os.PathLike, item: str, config: Any = None) -> FileReport | None:
    """If `out_path` is a finished, current output of `item` (made with `config`), its report (marked resumed),
    else None. Without `config` only the input name is checked."""
    if config is not None:
        return resume(out_path, item, config).done
    if not storage.exists(out_path):
        return None
    report = read_report(out_path)
    if report is None or report.input != str(item):
        return None
    report.resumed = True
    return report
