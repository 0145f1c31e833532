"""The measured cost and catch of each quality rule, as `bench/quality_rules.py` last measured them: per rule, the
share of each real good-text set it drops on its own and the share of the junk set it catches. The report shows
them beside the drops of a run, so a threshold's cost is seen before it is changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FALSE_DROPS_FILE = Path(__file__).with_name("false_drops.json")


def load() -> dict[str, Any] | None:
    """The measurement (`sets`: {set: {documents, all, rules: {rule: share}}}, `junk`: {documents, rules}), or None
    if it was never written."""
    if not FALSE_DROPS_FILE.exists():
        return None
    return json.loads(FALSE_DROPS_FILE.read_text(encoding="utf-8"))


def per_rule(measured: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per rule: the highest share of a good set it drops (and which set), and the share of junk it catches."""
    if not measured:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, s in measured["sets"].items():
        for rule, share in s["rules"].items():
            entry = out.setdefault(rule, {"good_max": -1.0, "good_set": None,
                                          "junk": measured["junk"]["rules"].get(rule)})
            if share > entry["good_max"]:
                entry["good_max"], entry["good_set"] = share, name
    return out
