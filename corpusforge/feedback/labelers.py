"""Scripted labelers: rank answers by a stated, verifiable rule and submit through the app's HTTP API, exactly as the
page does, so tests, benchmarks and the offline demo exercise everything downstream as people would.

Rules (a higher score ranks first; equal scores are ties):
  shorter   fewer characters (after stripping)
  longer    more characters
  mentions  mentions the prompt's subject (its longest word, 4 letters or more); then shorter
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from typing import Callable

from corpusforge.errors import UserError


def _subject(prompt: str) -> str:
    words = re.findall(r"[^\W\d_]{4,}", prompt.lower())
    return max(words, key=len) if words else ""


RULES: dict[str, Callable[[str, str], tuple]] = {
    "shorter": lambda prompt, answer: (-len(answer.strip()),),
    "longer": lambda prompt, answer: (len(answer.strip()),),
    "mentions": lambda prompt, answer: (_subject(prompt) in answer.lower() if _subject(prompt) else False,
                                        -len(answer.strip())),
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
