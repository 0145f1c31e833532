"""What each quality rule takes from good text and catches in junk, and the rules' speed before and after they
judged prose lines only.

1. False drops: on every real good-text set of `bench/goodtext.py` (trafilatura's and readability's evaluation
   pages, Wikipedia articles, Gutenberg parts, the WARC captures' articles, and documentation pages), the share of
   documents each rule (at the thresholds of a default `HeuristicsConfig`, every rule, on or off) drops on its own,
   and the share the default rules drop together; per set, per language and per kind of page.
2. Catch: the same on junk (`goodtext.junk_pages`), per kind of junk, and which junk only that rule drops.
3. Speed: `heuristics.measure` + `first_failed` over dolma's 697 real CommonCrawl documents, documents per
   CPU-second on one core, for this tree's rules and for the rules as they were before (the module at commit
   `BEFORE`, read with `git show`), alternating, best of a few rounds.

Writes bench/results/quality_rules.json (with a README table row per measure) and the measured shares the report
shows beside each rule's drops, corpusforge/quality/false_drops.json. Run: `.venv/bin/python -m bench.quality_rules
[--rounds 3]`; about 5 minutes (trafilatura's extraction of 990 pages is most of it). Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bench import goodtext
from bench.timing import best_rate
from corpusforge.quality import heuristics
from corpusforge.quality.false_drops import FALSE_DROPS_FILE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "quality_rules.json"
BEFORE = "14fde82"  # the last commit whose rules judged every line and word as prose


def shares(docs: list[dict], config: heuristics.HeuristicsConfig, module=heuristics) -> dict:
    """For `docs` (text, lang): per rule (every rule of the table at the config's thresholds) the documents it drops
    alone, and the ones the config's rules drop together, as boolean arrays. `module`: the rules' module (today's,
    or the one before, `_rules_before`, which has every rule on)."""
    every = [(r, float(config.thresholds.get(r.name, r.default))) for r in module.RULES]
    measures = module.measure([d["text"] for d in docs], [d["lang"] for d in docs], stop_words=config.stop_words)
    failed = np.array([rule.fails(measures[rule.measure], t) for rule, t in every]).reshape(len(every), len(docs))
    on = np.array([r.name not in config.off() for r, _ in every])
    return {"rules": dict(zip([r.name for r, _ in every], failed)), "all": failed[on].any(axis=0)}


def _share(mask: np.ndarray) -> float:
    return round(float(mask.mean()), 4) if len(mask) else 0.0


def measure_sets(good: list[dict], junk: list[dict], config: heuristics.HeuristicsConfig, module=heuristics) -> dict:
    """The false-drop table on good text (per set, language, kind) and the catch table on junk (per kind)."""
    result: dict = {"sets": {}, "junk": {}}
    for name in goodtext.SETS:
        docs = [d for d in good if d["set"] == name]
        got = shares(docs, config, module)
        langs = Counter(d["lang"] for d in docs)
        by_lang = {}
        for lang, n in langs.most_common():
            sel = np.array([d["lang"] == lang for d in docs])
            by_lang[lang] = {"documents": n, "all": _share(got["all"][sel]),
                             "rules": {r: _share(m[sel]) for r, m in got["rules"].items() if m[sel].any()}}
        kinds = Counter(d["kind"] for d in docs)
        result["sets"][name] = {"documents": len(docs), "all": _share(got["all"]), "kinds": dict(kinds),
                                "rules": {r: _share(m) for r, m in got["rules"].items()}, "by_lang": by_lang,
                                "dropped": [docs[i]["name"] for i in np.flatnonzero(got["all"])]}
    got = shares(junk, config, module)
    on = [r for r in got["rules"] if r not in config.off()]
    failed = np.array([got["rules"][r] for r in on])
    only = failed & (failed.sum(axis=0) == 1)
    kinds = sorted(set(j["kind"] for j in junk))
    result["junk"] = {
        "documents": len(junk), "all": _share(got["all"]),
        "kinds": {k: {"documents": sum(j["kind"] == k for j in junk),
                      "caught": int(got["all"][[j["kind"] == k for j in junk]].sum())} for k in kinds},
        "missed": sorted({j["kind"] for j, hit in zip(junk, got["all"]) if not hit}),
        "rules": {r: {"caught": _share(m), "kinds": sorted({j["kind"] for j, hit in zip(junk, m) if hit}),
                      "only": int(only[on.index(r)].sum()) if r in on else 0}
                  for r, m in got["rules"].items()}}
    return result


COST = 0.005  # a rule that drops more than this share of some good set must catch junk no other rule catches


def choose_defaults(good: list[dict], junk: list[dict]) -> list[str]:
    """The rules to turn off by default, by the measure: starting from every rule on, repeatedly turn off the rule
    that drops the largest share of some good set (above `COST`) among those that catch no junk page the other
    rules left on miss; stop when every rule left on is cheap or catches junk of its own."""
    config = heuristics.HeuristicsConfig(enable=list(heuristics.RULE_NAMES))
    good_failed = {n: shares([d for d in good if d["set"] == n], config)["rules"] for n in goodtext.SETS}
    junk_failed = shares(junk, config)["rules"]
    off: list[str] = []
    while True:
        on = [r for r in heuristics.RULE_NAMES if r not in off]
        caught = np.array([junk_failed[r] for r in on])
        only = dict(zip(on, (caught & (caught.sum(axis=0) == 1)).sum(axis=1)))
        cost = {r: max(float(good_failed[n][r].mean()) for n in goodtext.SETS if len(good_failed[n][r])) for r in on}
        candidates = [r for r in on if not only[r] and cost[r] > COST]
        if not candidates:
            return off
        off.append(max(candidates, key=lambda r: (cost[r], r)))


def _rules_before():
    """The heuristics module as it was at `BEFORE`, imported under another name."""
    source = subprocess.run(["git", "show", f"{BEFORE}:corpusforge/quality/heuristics.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("heuristics_before", f.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules["heuristics_before"] = module
    spec.loader.exec_module(module)
    os.unlink(f.name)
    return module


def speed(rounds: int) -> dict:
    """Documents per CPU-second of the rules now and before, on dolma's CommonCrawl documents, alternating."""
    from bench.quality import web_documents
    from corpusforge import language

    docs = web_documents()
    texts = [d["text"] for d in docs]
    langs = [language.identify(t)[0] for t in texts]
    before = _rules_before()
    rates: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(rounds):
        for name, module in (("before", before), ("after", heuristics)):
            rules = module.HeuristicsConfig().rules()
            rates[name].append(best_rate(lambda: module.first_failed(module.measure(texts, langs), rules, len(texts)),
                                         len(texts), 1, time.process_time))
    return {"documents": len(texts), "before_docs_per_cpu_s": max(rates["before"]),
            "after_docs_per_cpu_s": max(rates["after"])}


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    good, junk = goodtext.good_sets(), goodtext.junk_pages()
    config = heuristics.HeuristicsConfig()
    chosen = choose_defaults(good, junk)
    if sorted(chosen) != sorted(heuristics.OFF_BY_DEFAULT):
        print(f"warning: the measure turns off {chosen}, the defaults {heuristics.OFF_BY_DEFAULT}")
    measured = measure_sets(good, junk, config)
    every_rule = measure_sets(good, junk, heuristics.HeuristicsConfig(enable=list(heuristics.RULE_NAMES)))
    before = measure_sets(good, junk, heuristics.HeuristicsConfig(enable=list(heuristics.RULE_NAMES)),
                          _rules_before())
    rate = speed(args.rounds)
    sets = measured["sets"]
    table = [
        {"what": "quality rules (defaults together): share of real good text dropped, per set ("
                 + ", ".join(f"{n} {sets[n]['documents']:,}" for n in goodtext.SETS) + " docs)",
         "result": " / ".join(_percent(sets[n]["all"]) for n in goodtext.SETS),
         "baseline": "before (every line as prose, every rule): " + " / ".join(
             _percent(before["sets"][n]["all"]) for n in goodtext.SETS),
         "ratio": ""},
        {"what": f"quality rules (defaults together): junk caught ({measured['junk']['documents']} pages, "
                 f"{len(measured['junk']['kinds'])} kinds)",
         "result": _percent(measured["junk"]["all"]),
         "baseline": f"before: {_percent(before['junk']['all'])}", "ratio": ""},
        {"what": "quality rules, docs/s per core on real CommonCrawl text, judging prose lines (after) vs every line "
                 "(before)",
         "result": f"{rate['after_docs_per_cpu_s']:,.0f}", "baseline": f"{rate['before_docs_per_cpu_s']:,.0f} before",
         "ratio": f"{rate['after_docs_per_cpu_s'] / rate['before_docs_per_cpu_s']:.2f}x"},
    ]
    result = {"table": table, "defaults": measured, "every_rule": every_rule, "before": before, "speed": rate,
              "off_by_default": list(heuristics.OFF_BY_DEFAULT), "chosen_by_the_measure": chosen,
              "seconds": round(time.perf_counter() - t0, 1)}
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    package = {"source": "bench/quality_rules.py", "sets": {
        n: {"documents": s["documents"], "all": s["all"], "rules": s["rules"]} for n, s in sets.items()},
        "junk": {"documents": measured["junk"]["documents"],
                 "rules": {r: v["caught"] for r, v in measured["junk"]["rules"].items()}}}
    FALSE_DROPS_FILE.write_text(json.dumps(package, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
