"""The sample's chat part: conversations for supervised fine-tuning (`make sft`), in the `messages` JSONL format.

They are drawn, deterministically for a seed, from the facts and templates in `texts/chat.toml`, written for this
sample: questions of five kinds (a capital, a sum, a definition, a list of three, a greeting), each answered in one
fixed shape that depends on the kind (`Capital: ...`, `Result: a + b = c.`, `Definition: ...`, `1. 2. 3.`, a fixed
greeting), so whether a model follows the format is checked by a regular expression (`follows_format`). Some
conversations have a system prompt (one of them asks every reply to end with "Anything else?"), some have several
turns, where a follow-up ("And Peru?") asks the same kind again.
"""

from __future__ import annotations

import json
import random
import re
import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from corpusforge.runtime import write_text_atomic

FILE = "conversations.jsonl"
COUNT = 1600


@cache
def load_texts() -> dict[str, Any]:
    """The kinds, system prompts and facts of the sample conversations (`texts/chat.toml`)."""
    return tomllib.loads(resources.files(__package__).joinpath("texts", "chat.toml").read_text(encoding="utf-8"))


def _fields(kind: str, rng: random.Random, facts: dict[str, Any]) -> dict[str, Any]:
    if kind == "capital":
        country, city = rng.choice(facts["capitals"])
        return {"country": country, "city": city}
    if kind == "sum":
        a, b = rng.randint(1, 49), rng.randint(1, 49)
        return {"a": a, "b": b, "c": a + b}
    if kind == "define":
        word, meaning = rng.choice(facts["words"])
        return {"word": word, "meaning": meaning}
    if kind == "list":
        category, items = rng.choice(facts["lists"])
        return {"category": category, **{f"item{i}": x for i, x in enumerate(rng.sample(items, 3), 1)}}
    return {}


def conversations(seed: int, count: int = COUNT) -> list[dict[str, Any]]:
    """`count` conversations (`schemas/conversation.schema.json`), the same for the same seed. Each one's
    `metadata.kinds` names the kind of each user turn, and `metadata.suffix` what every reply ends with."""
    texts = load_texts()
    kinds = sorted(texts["kind"])
    rng = random.Random(seed)
    out = []
    for n in range(count):
        messages, asked = [], []
        system = rng.choice(texts["system"]) if rng.random() < 0.3 else None
        suffix = system["suffix"] if system else ""
        if system:
            messages.append({"role": "system", "content": system["text"]})
        for turn in range(rng.choices([1, 2, 3], weights=[6, 3, 1])[0]):
            previous = texts["kind"][asked[-1]] if asked else None
            if previous is not None and previous["follow_up"] and rng.random() < 0.5:
                kind, templates = asked[-1], previous["follow_up"]
            else:
                kind = rng.choice(kinds)
                templates = texts["kind"][kind]["ask"]
            fields = _fields(kind, rng, texts["facts"])
            messages.append({"role": "user", "content": rng.choice(templates).format(**fields)})
            messages.append({"role": "assistant", "content": texts["kind"][kind]["reply"].format(**fields) + suffix})
            asked.append(kind)
        out.append({"id": f"sample-chat-{seed}-{n:04d}", "messages": messages, "source": "corpusforge.sample.chat",
                    "metadata": {"kinds": asked, "suffix": suffix}})
    return out


def follows_shape(kind: str, reply: str, suffix: str = "") -> bool:
    """Whether `reply` has the layout of a `kind` reply, whatever it says in the template's fields: as many lines as
    the template, each opening and closing with that template line's fixed text (a line without fields whole), and
    ending in `suffix`. The structure a model must pick from the question, apart from getting the facts right."""
    if suffix:
        if not reply.endswith(suffix):
            return False
        reply = reply[:-len(suffix)]
    lines, template = reply.split("\n"), load_texts()["kind"][kind]["reply"].split("\n")
    if len(lines) != len(template):
        return False
    for line, pattern in zip(lines, template):
        if "{" not in pattern:
            if line != pattern:
                return False
            continue
        lead, tail = pattern[:pattern.index("{")], pattern[pattern.rindex("}") + 1:]
        if len(line) <= len(lead) + len(tail) or not (line.startswith(lead) and line.endswith(tail)):
            return False
    return True


def follows_format(kind: str, reply: str, suffix: str = "") -> bool:
    """Whether `reply` has the shape of a `kind` reply (ending in `suffix`, as the system prompt asked)."""
    if suffix:
        if not reply.endswith(suffix):
            return False
        reply = reply[:-len(suffix)]
    return re.fullmatch(load_texts()["kind"][kind]["check"], reply) is not None


def build(out_dir: Path, seed: int) -> dict[str, Any]:
    """Write `conversations.jsonl` (COUNT conversations) under `out_dir`."""
    rows = conversations(seed)
    write_text_atomic(Path(out_dir) / FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return {"conversations": len(rows), "turns": sum(len(r["metadata"]["kinds"]) for r in rows),
            "with_system_prompt": sum(r["messages"][0]["role"] == "system" for r in rows)}


def write_prompts(path: Path, seed: int, count: int = 256) -> int:
    """Write `count` prompts (JSONL of {"messages"}: a conversation's system prompt, if any, and first question)
    drawn like the conversations with another seed, for feedback collection, RLHF and its evaluation; returns
    how many."""
    rows = [{"messages": c["messages"][:2] if c["messages"][0]["role"] == "system" else c["messages"][:1]}
            for c in conversations(seed, count)]
    write_text_atomic(Path(path), "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return len(rows)
