"""Scripted labelers: rank answers by a stated, verifiable rule and submit through the app's HTTP API, exactly as the
page does, so tests, benchmarks and the offline demo exercise everything downstream as people would.

Rules (a higher score ranks first; equal scores are ties):
  shorter   fewer characters (after stripping)
  longer    more characters
  mentions  mentions the prompt's subject (its longest word, 4 letters or more); then shorter
  polite    ends by asking whether more help is wanted (a question, as "Anything else?"); the rest tie: a verifiable
            preference for RLHF that a tiny model can learn
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from typing import Callable

from corpusforge.errors import UserError
from corpusforge.options import option, setting


def _subject(prompt: str) -> str:
    words = re.findall(r"[^\W\d_]{4,}", prompt.lower())
    return max(words, key=len) if words else ""


RULES: dict[str, Callable[[str, str], tuple]] = {
    "shorter": lambda prompt, answer: (-len(answer.strip()),),
    "longer": lambda prompt, answer: (len(answer.strip()),),
    "mentions": lambda prompt, answer: (_subject(prompt) in answer.lower() if _subject(prompt) else False,
                                        -len(answer.strip())),
    "polite": lambda prompt, answer: (answer.rstrip().endswith("?"),),
}


def rank(rule: str, prompt: str, answers: list[dict]) -> list[list[str]]:
    """The best-to-worst groups of answer ids (`answers`: [{id, text}]) that `rule` gives; equal scores tie."""
    if rule not in RULES:
        raise UserError(f"unknown labeler rule {rule!r}; known: {', '.join(RULES)}")
    scored = sorted(answers, key=lambda a: RULES[rule](prompt, a["text"]), reverse=True)
    groups: list[list[str]] = []
    last = None
    for answer in scored:
        score = RULES[rule](prompt, answer["text"])
        if groups and score == last:
            groups[-1].append(answer["id"])
        else:
            groups.append([answer["id"]])
        last = score
    return groups


@dataclasses.dataclass
class LabelerRun:
    """What one scripted labeler did: submissions acknowledged (each with its id) and per-submit latency."""

    labeler: str
    stored: list[str] = dataclasses.field(default_factory=list)
    latencies_s: list[float] = dataclasses.field(default_factory=list)


def label(base_url: str, *, rule: str, n: int, labeler: str, token: str | None = None, timeout_s: float = 120,
          session=None) -> LabelerRun:
    """Rank `n` offers of the Rank page at `base_url` by `rule`, submitting each ranking like the page does (with
    an idempotency key, retried once on a lost connection)."""
    import requests

    http = session or requests.Session()
    if token:
        http.headers["Authorization"] = f"Bearer {token}"
    run = LabelerRun(labeler)
    for _ in range(n):
        offer = _post(http, f"{base_url}/api/rank/next", {"labeler": labeler}, timeout_s)
        body = {"offer_id": offer["offer_id"], "labeler": labeler, "idempotency_key": secrets.token_hex(16),
                "ranking": rank(rule, offer["prompt"], offer["answers"]), "flags": {}}
        start = time.perf_counter()
        result = _post(http, f"{base_url}/api/rank/submit", body, timeout_s)
        run.latencies_s.append(time.perf_counter() - start)
        run.stored.append(result["id"])
    return run


def _post(http, url: str, body: dict, timeout_s: float) -> dict:
    import requests

    for attempt in (1, 2):
        try:
            response = http.post(url, json=body, timeout=timeout_s)
            break
        except requests.ConnectionError:
            if attempt == 2:
                raise
    if response.status_code >= 400:
        raise UserError(f"{url}: {response.status_code} {response.text[:300]}")
    return response.json()


WORDS = "cat river sky blue tree stone water light green small house bird cloud rain wind hill".split()


def synthetic(store, n_prompts: int, *, rule: str = "shorter", k: int = 4, seed: int = 0,
              demonstrations: int = 3) -> None:
    """Fill `store` with `n_prompts` rankings by `rule` of K answers of random words (not the model's: quick,
    repeatable data for testing and benchmarking the reward model) and a few demonstrations, through the same
    offers and submissions the app makes."""
    import random

    rng = random.Random(seed)
    for p in range(n_prompts):
        prompt = f"Tell me about the {rng.choice(WORDS)} number {p}."
        answers = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(k)]
        shown = store.offer("rank", labeler=f"script:{rule}", model="synthetic", sampling={"seed": seed},
                            context=[{"role": "user", "content": prompt}], answers=answers)
        store.submit_ranking(shown["offer_id"], rank(rule, prompt, shown["answers"]), key=secrets.token_hex(16),
                             labeler=f"script:{rule}")
    for d in range(demonstrations):
        shown = store.offer("write", labeler="script:writer", model="synthetic", sampling={}, answers=[],
                            context=[{"role": "user", "content": f"Say something about the {WORDS[d]}."}])
        store.submit_demonstration(shown["offer_id"], f"The {WORDS[d]} is {WORDS[-d - 1]}.",
                                   key=secrets.token_hex(16), labeler="script:writer")


@dataclasses.dataclass
class LabelCommand:
    """`corpusforge feedback label URL`: `n` rankings by `rule`, stored as `labeler`."""

    url: str = dataclasses.field(metadata=option("the app, e.g. http://127.0.0.1:8000", positional=True))
    rule: str = setting("shorter", "shorter, longer or mentions (see feedback/labelers.py)")
    n: int = setting(10, "rankings to submit")
    labeler: str = setting("script", "the name stored with each ranking")
    token: str | None = setting(None, "the app's token, when it has one")


def label_command(command: LabelCommand) -> None:
    """`corpusforge feedback label`: `label`, and a line of how many rankings were stored."""
    run = label(command.url.rstrip("/"), rule=command.rule, n=command.n, labeler=command.labeler,
                token=command.token)
    print(f"{command.labeler}: {len(run.stored)} rankings stored by rule {command.rule!r}")
