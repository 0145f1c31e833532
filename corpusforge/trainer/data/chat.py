"""Conversations: the reserved special tokens, readers for the formats users have, the chat template and packing.

Follow one conversation as data: a file (Hugging Face/TRL `messages` JSONL or Parquet, Alpaca/Self-Instruct
instructions, Anthropic HH transcripts) -> `read_conversations` (a dict of `schemas/conversation.schema.json`;
damaged records reported with file and line, skipped) -> `render` (token ids and the targets the loss sees) ->
`pack` (blocks of `block_size + 1` tokens with per-token document ids, so no token attends to another conversation).

The template, for a system prompt, one exchange and the prompt of the next (spaces only for reading):

    <|endoftext|> <|system|> You are terse. <|end|> <|user|> Hi <|end|> <|assistant|> Hello. <|end|> <|user|> ...

Targets are -1 everywhere except the assistant's tokens and the `<|end|>` that closes each assistant turn: the
model learns to answer and to stop, never to write the user's turn. A prompt for generation ends with
`<|assistant|>`. Nothing here imports torch (the mixer imports the special tokens).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from corpusforge import schema

# The reserved special tokens, named once: a tokenizer trained by the mixer and the character tokenizer reserve them
# first, in this order, so their ids are 0..5.
SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
EOT, PAD, SYSTEM, USER, ASSISTANT, END = SPECIAL_TOKENS
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}

FORMATS = ("auto", "messages", "alpaca", "hh")
MAX_LINE_BYTES = 4 << 20  # a JSONL line (one conversation) longer than this is reported, not parsed
MAX_FILE_BYTES = 1 << 30  # a whole-file format (a JSON array) is read into memory only up to this size
MAX_ERRORS_KEPT = 1000  # errors listed in a ReadReport (all are counted)
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ?")


# ------------------------------------------------------------------------------------------------ reading
@dataclasses.dataclass
class ReadReport:
    """What `read_conversations` saw: files, records, conversations yielded, and each record it skipped with
    {file, line, reason} (the first MAX_ERRORS_KEPT listed; `skipped` counts them all, by reason in `reasons`).
    For Parquet files and JSON arrays, `line` is the record's number (from 1)."""

    files: int = 0
    records: int = 0
    conversations: int = 0
    skipped: int = 0
    formats: Counter = dataclasses.field(default_factory=Counter)
    reasons: Counter = dataclasses.field(default_factory=Counter)
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def error(self, file: str, line: int, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason.split(":", 1)[0]] += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append({"file": file, "line": line, "reason": reason})

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "records": self.records, "conversations": self.conversations,
                "skipped": self.skipped, "formats": dict(self.formats), "reasons": dict(self.reasons),
                "errors": self.errors}


class BadRecord(ValueError):
    """A record that is not a usable conversation; the message is the reason reported."""


def read_conversations(paths: str | os.PathLike | Iterable[str | os.PathLike], *, format: str = "auto",
                       report: ReadReport | None = None, max_line_bytes: int = MAX_LINE_BYTES
                       ) -> Iterator[dict[str, Any]]:
    """Conversations (dicts of `schemas/conversation.schema.json`) from JSON Lines (`.jsonl`, `.jsonl.gz`, or a
    `.json` that does not start with `[`), JSON arrays (`.json`) and Parquet files, or folders of them, in path
    order.

    `format` is "messages" (Hugging Face/TRL: a `messages` list of {role, content}), "alpaca" (`instruction`,
    `input`, `output`; or Self-Instruct's seed tasks with `instances`, one conversation per instance), "hh"
    (Anthropic HH: the `chosen` transcript), or "auto": each file's format is told by its first record's keys.
    A damaged record (bad JSON, an over-long line, an unknown role, an empty or missing assistant turn) is reported
    in `report` with its file and line and skipped; reading goes on.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    report = report if report is not None else ReadReport()
    for path in _files(paths):
        report.files += 1
        fmt = None if format == "auto" else format
        for line, record in _records(path, report, max_line_bytes):
            report.records += 1
            try:
                if not isinstance(record, dict):
                    raise BadRecord(f"not a conversation: a JSON {type(record).__name__}, not an object")
                fmt = fmt or _detect(record)
                for conversation in _CONVERTERS[fmt](record, path, line):
                    check(conversation)
                    report.conversations += 1
                    yield conversation
            except BadRecord as err:
                report.error(str(path), line, str(err))
        if fmt:
            report.formats[fmt] += 1


def _files(paths) -> list[Path]:
    """The input files: each path itself, or a folder's conversation files in name order."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("no conversation files given")
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.name.endswith((".jsonl", ".jsonl.gz", ".json", ".parquet")))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"no conversation file {p}")
    return files


def _records(path: Path, report: ReadReport, max_line_bytes: int) -> Iterator[tuple[int, Any]]:
    """(line or record number, parsed record) of one file; unparsable lines are reported and skipped."""
    if path.suffix == ".sqlite":  # a feedback store: its demonstrations, already conversations
        from corpusforge.feedback.store import Store

        store = Store(path)
        try:
            for number, row in enumerate(store.rows("demonstration"), start=1):
                yield number, {"id": row["id"], "messages": row["messages"],
                               "metadata": {"labeler": row["labeler"], "model": row["model"]}}
        finally:
            store.close()
        return
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                number += 1
                yield number, record
        return
    if path.suffix == ".json" and _first_byte(path) == b"[":  # a JSON array (a `.json` may also hold JSON Lines)
        if path.stat().st_size > MAX_FILE_BYTES:
            report.error(str(path), 0, f"file too large: over {MAX_FILE_BYTES:,} bytes for a JSON array")
            return
        try:
            records = json.loads(path.read_bytes())
        except ValueError as err:
            report.error(str(path), 0, f"bad JSON: {err}"[:300])
            return
        yield from enumerate(records, start=1)
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        number = 0
        while True:
            line = fh.readline(max_line_bytes + 1)  # the limit bounds memory whatever the file holds
            if not line:
                return
            number += 1
            if len(line) > max_line_bytes:
                while line and not line.endswith(b"\n"):  # skip the rest of the long line
                    line = fh.readline(max_line_bytes)
                report.records += 1
                report.error(str(path), number, f"line too long: over {max_line_bytes:,} bytes")
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as err:
                report.records += 1
                report.error(str(path), number, f"bad JSON: {err}"[:300])


def _first_byte(path: Path) -> bytes:
    """The first byte of a file that is not whitespace (b"" if none in its first 4 KiB)."""
    with open(path, "rb") as fh:
        return fh.read(4096).lstrip()[:1]


def _detect(record: dict) -> str:
    if "messages" in record:
        return "messages"
    if "instruction" in record:
        return "alpaca"
    if "chosen" in record:
        return "hh"
    raise BadRecord(f"unknown format: no `messages`, `instruction` or `chosen` key (keys: {sorted(record)[:8]})")


def _conversation(record: dict, path: Path, line: int, messages: list[dict], fmt: str, suffix: str = "",
                  **metadata) -> dict[str, Any]:
    own_id = record.get("id")
    cid = f"{own_id}{suffix}" if isinstance(own_id, str) and own_id else f"{path.name}:{line}{suffix}"
    return {"id": cid, "messages": messages, "source": str(path),
            "metadata": {**metadata, "format": fmt, "line": line}}


def _from_messages(record: dict, path: Path, line: int) -> Iterator[dict]:
    messages = record.get("messages")
    if not isinstance(messages, list):
        raise BadRecord("bad messages: `messages` is not a list")
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise BadRecord(f"bad message: message {i} has no text `content`")
        if m.get("role") not in ROLE_TOKENS:
            raise BadRecord(f"unknown role: message {i} has role {m.get('role')!r}; "
                            f"known: {', '.join(ROLE_TOKENS)}")
        turns.append({"role": m["role"], "content": m["content"]})
    extra = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    yield _conversation(record, path, line, turns, "messages", **extra)


def _from_alpaca(record: dict, path: Path, line: int) -> Iterator[dict]:
    instruction = record.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise BadRecord("empty user turn: no `instruction` text")
    instances = record.get("instances")
    if instances is None:  # Alpaca: one instance in the record itself
        instances, suffix = [record], lambda i: ""
    elif not isinstance(instances, list) or not instances:
        raise BadRecord("bad instances: `instances` is not a non-empty list")
    else:  # Self-Instruct seed tasks: each instance is a conversation
        suffix = (lambda i: f"/{i}") if len(instances) > 1 else (lambda i: "")
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict) or not isinstance(inst.get("output"), str):
            raise BadRecord(f"no assistant turn: instance {i} has no text `output`")
        given = inst.get("input") or ""
        user = f"{instruction}\n\n{given}" if given.strip() else instruction
        extra = {k: record[k] for k in ("name", "is_classification") if k in record}
        yield _conversation(record, path, line, [{"role": "user", "content": user},
                                                 {"role": "assistant", "content": inst["output"]}],
                            "alpaca", suffix(i), **extra)


def _from_hh(record: dict, path: Path, line: int) -> Iterator[dict]:
    text = record.get("chosen")
    if not isinstance(text, str):
        raise BadRecord("no transcript: `chosen` is not text")
    yield _conversation(record, path, line, parse_hh_transcript(text), "hh")


def parse_hh_transcript(text: str) -> list[dict[str, str]]:
    """The turns of an Anthropic HH transcript ("\\n\\nHuman: ...\\n\\nAssistant: ..."); BadRecord unless it starts
    with a Human turn and the speakers alternate."""
    parts = _HH_TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise BadRecord("bad transcript: does not start with '\\n\\nHuman: '")
    turns = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        if turns and turns[-1]["role"] == role:
            raise BadRecord(f"bad transcript: two {speaker} turns in a row (turn {len(turns) + 1})")
        turns.append({"role": role, "content": content.strip()})
    return turns


_CONVERTERS = {"messages": _from_messages, "alpaca": _from_alpaca, "hh": _from_hh}


def check(conversation: dict[str, Any]) -> None:
    """BadRecord unless the conversation follows `schemas/conversation.schema.json`, has an assistant turn and
    every assistant turn has text."""
    try:
        schema.validate_record(conversation, "conversation")
    except schema.SchemaError as err:
        raise BadRecord(f"not a conversation: {err}") from None
    roles = [m["role"] for m in conversation["messages"]]
    if "assistant" not in roles:
        raise BadRecord("no assistant turn")
    for i, m in enumerate(conversation["messages"]):
        if m["role"] == "assistant" and not m["content"].strip():
            raise BadRecord(f"empty assistant turn: message {i}")


# ------------------------------------------------------------------------------------------------ the template
def special_ids(tokenizer) -> dict[str, int]:
    """Id of each reserved special token; ValueError when the tokenizer lacks one."""
    ids = {tok: tokenizer.token_to_id(tok) for tok in SPECIAL_TOKENS}
    missing = [tok for tok, i in ids.items() if i is None]
    if missing:
        raise ValueError(f"tokenizer lacks the special token(s) {missing}")
    return ids


def render(messages: list[dict[str, str]], tokenizer, *, for_generation: bool = False
           ) -> tuple[list[int], list[int]]:
    """A conversation as token ids and, aligned with them, targets: the id where the loss applies (the assistant's
    tokens and the `<|end|>` closing each assistant turn), -1 elsewhere. A training step predicts `ids[1:]` from
    `ids[:-1]` with `targets[1:]`.

    `for_generation`: the prompt for the next assistant turn (the messages must not end with one); it ends with
    `<|assistant|>`. The tokenizer must encode special-token spellings in text as plain text
    (`encode_special_tokens`, as `corpusforge.mix.tokenizer.load` sets it), so text cannot inject a turn.
    """
    if not getattr(tokenizer, "encode_special_tokens", False):
        raise ValueError("the tokenizer would turn special-token spellings in text into special tokens; load it "
                         "with corpusforge.mix.tokenizer.load or set tokenizer.encode_special_tokens = True")
    special = special_ids(tokenizer)
    if for_generation and messages and messages[-1]["role"] == "assistant":
        raise ValueError("a generation prompt ends with a user or system turn, not an assistant turn")
    texts = tokenizer.encode_batch([m["content"] for m in messages], add_special_tokens=False)
    ids, targets = [special[EOT]], [-1]
    for m, text in zip(messages, texts):
        if m["role"] not in ROLE_TOKENS:
            raise ValueError(f"unknown role {m['role']!r}")
        body = [*text.ids, special[END]]
        ids += [special[ROLE_TOKENS[m["role"]]], *body]
        targets += [-1, *(body if m["role"] == "assistant" else [-1] * len(body))]
    if for_generation:
        ids.append(special[ASSISTANT])
        targets.append(-1)
    return ids, targets


# ------------------------------------------------------------------------------------------------ packing
@dataclasses.dataclass
class PackStats:
    """What `pack` did: conversations in, blocks out, tokens placed and padding added, conversations truncated
    at the block length and those dropped because nothing the loss sees was left after truncation."""

    conversations: int = 0
    blocks: int = 0
    tokens: int = 0
    padding: int = 0
    truncated: int = 0
    dropped: int = 0

    @property
    def padding_share(self) -> float:
        return self.padding / max(1, self.tokens + self.padding)


@dataclasses.dataclass
class PackedBlock:
    """`block_size + 1` positions: token ids, targets (-1: no loss) and document ids (a conversation's positions
    share one; padding has its own). Train on ids[:-1] -> targets[1:], masking attention by doc_ids[:-1]."""

    ids: np.ndarray
    targets: np.ndarray
    doc_ids: np.ndarray


def pack(examples: Iterable[tuple[list[int], list[int]]], block_size: int, *, pad_id: int,
         stats: PackStats | None = None, open_blocks: int = 64, max_per_block: int | None = None
         ) -> Iterator[PackedBlock]:
    """Rendered conversations (ids, targets) packed into blocks of `block_size + 1` tokens, best fit: each goes
    into the open block with the least room that still holds it; when `open_blocks` are open and none holds it, the
    fullest is padded and yielded. Deterministic for the same input order; memory holds `open_blocks` blocks.

    A conversation longer than a block is truncated to `block_size + 1` tokens (counted in `stats.truncated`); one
    with no target left after that is dropped (`stats.dropped`). `max_per_block=1` gives one conversation per
    padded block (no packing), for comparison.
    """
    if block_size < 1 or open_blocks < 1:
        raise ValueError("block_size and open_blocks must be >= 1")
    stats = stats if stats is not None else PackStats()
    n = block_size + 1
    blocks: list[list[tuple[list[int], list[int]]]] = []  # open blocks: their conversations
    room: list[int] = []

    def close(i: int) -> PackedBlock:
        parts = blocks.pop(i)
        free = room.pop(i)
        stats.blocks += 1
        stats.padding += free
        ids = np.full(n, pad_id, dtype=np.int64)
        targets = np.full(n, -1, dtype=np.int64)
        doc_ids = np.full(n, len(parts), dtype=np.int64)  # padding is a document of its own
        at = 0
        for d, (i_ids, i_targets) in enumerate(parts):
            ids[at:at + len(i_ids)], targets[at:at + len(i_ids)], doc_ids[at:at + len(i_ids)] = i_ids, i_targets, d
            at += len(i_ids)
        return PackedBlock(ids, targets, doc_ids)

    for ids, targets in examples:
        if len(ids) != len(targets):
            raise ValueError(f"ids and targets differ in length ({len(ids)} != {len(targets)})")
        stats.conversations += 1
        if len(ids) > n:
            stats.truncated += 1
            ids, targets = ids[:n], targets[:n]
        if all(t < 0 for t in targets[1:]):
            stats.dropped += 1
            continue
        stats.tokens += len(ids)
        fits = [i for i, r in enumerate(room) if r >= len(ids)
                and (max_per_block is None or len(blocks[i]) < max_per_block)]
        if fits:
            best = min(fits, key=lambda i: room[i])
        else:
            if len(blocks) == open_blocks:
                yield close(min(range(len(room)), key=lambda i: room[i]))
            blocks.append([])
            room.append(n)
            best = len(blocks) - 1
        blocks[best].append((ids, targets))
        room[best] -= len(ids)
        if room[best] == 0 or (max_per_block is not None and len(blocks[best]) == max_per_block):
            yield close(best)
    while blocks:
        yield close(0)
