"""Benchmark of extraction fidelity by mode: how much of the main text each trafilatura mode keeps, and its cost.

    .venv/bin/python -m bench.extraction [--every N]

Two real page sets from ../shared/data/extraction: mozilla's 130 readability test pages, whose expected article
gives the whole main text (full-text token precision/recall/F1, and the share of pages keeping under half of it),
and trafilatura's 990 evaluation pages, which have only snippets (trafilatura's snippet F1) and so are measured
against a reference extraction instead: the share of pages keeping under half the tokens of trafilatura's default
mode. Modes: fast, fallback (corpusforge's default: fast, then the default mode where fast looks truncated),
balanced (trafilatura's default) and recall (favor_recall); each page runs every mode before the next page, so the
modes meet the same conditions, and each is timed in CPU seconds (pages/s per core). Language: accuracy of lid.176
on each mode's text (with the `<html lang>` tie-break) against the readability pages' `lang`, beside plain
trafilatura (default mode) + lid.176. Results: bench/results/extraction.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from bench import extract_eval
from corpusforge import language
from corpusforge.extract import ExtractOptions, decode_html, extract_in_process, html_lang

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results" / "extraction.json"
MODES = ("fallback", "fast", "balanced", "recall")
REFERENCE = "balanced"  # trafilatura's default mode: the plain-trafilatura baseline


def run_modes(pages: list[tuple[str, bytes]]) -> tuple[dict[str, list[str | None]], dict[str, float], list[str]]:
    """Every mode on every (url, html bytes) page: texts by mode, CPU seconds by mode, the decoded pages."""
    options = {mode: ExtractOptions(mode=mode) for mode in MODES}
    for mode in MODES:  # lazily loaded parts (word lists, the public-suffix list) are not charged to a page
        extract_in_process(decode_html(pages[0][1])[0], pages[0][0], options[mode])
    texts: dict[str, list[str | None]] = {mode: [] for mode in MODES}
    cpu = dict.fromkeys(MODES, 0.0)
    decoded = []
    for url, raw in pages:
        html = decode_html(raw)[0]
        decoded.append(html)
        for mode in MODES:
            t = time.process_time()
            texts[mode].append(extract_in_process(html, url, options[mode])[1])
            cpu[mode] += time.process_time() - t
    return texts, cpu, decoded


def language_accuracy(pages, texts, decoded) -> dict[str, float]:
    """Share of the labelled pages whose language is found: plain trafilatura + lid.176, and each mode's text with
    the `<html lang>` tie-break (language.identify_page)."""
    labelled = [(i, p.lang.split("-")[0].lower()) for i, p in enumerate(pages) if p.lang]
    result = {"pages": len(labelled), "plain_trafilatura": sum(
        language.identify(texts[REFERENCE][i] or "")[0] == want for i, want in labelled) / len(labelled)}
    for mode in MODES:
        result[mode] = sum(language.identify_page(texts[mode][i] or "", html_lang(decoded[i]))[0] == want
                           for i, want in labelled) / len(labelled)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench.extraction", description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=1, help="use every Nth trafilatura eval page (default: all)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    readability = extract_eval.load_readability_pages(SHARED / "extraction" / "mozilla-readability-test-pages")
    rd_texts, rd_cpu, rd_html = run_modes([(p.url, p.html) for p in readability])
    expected = [p.expected for p in readability]
    rd = {mode: extract_eval.full_text_score(zip(rd_texts[mode], expected)) for mode in MODES}
    lang = language_accuracy(readability, rd_texts, rd_html)
    print(f"readability: {rd}\nlanguage: {lang}", flush=True)

    trafilatura = extract_eval.load_pages(SHARED / "extraction" / "trafilatura-eval")[::args.every]
    tr_texts, tr_cpu, _ = run_modes([(p.url, p.html) for p in trafilatura])
    tr = {mode: {**extract_eval.score(zip(trafilatura, tr_texts[mode])),
                 "under_half": extract_eval.full_text_score(zip(tr_texts[mode], tr_texts[REFERENCE]))["under_half"]}
          for mode in MODES}
    print(f"trafilatura eval: {tr}", flush=True)

    def pps(cpu: dict[str, float], n: int, mode: str) -> float:
        return n / cpu[mode]

    switched = sum(a != b for a, b in zip(tr_texts["fallback"], tr_texts["fast"])) / len(trafilatura)
    table = []
    for mode in MODES:
        if mode == REFERENCE:
            continue
        r, b = rd[mode], rd[REFERENCE]
        fast_rd, base_rd = pps(rd_cpu, len(readability), mode), pps(rd_cpu, len(readability), REFERENCE)
        table.append({
            "what": f"full text, mode {mode}: {len(readability)} readability pages (token F1 against the expected "
                    "article; share of pages under half of it)",
            "result": f"F1 {r['f1']} (P {r['precision']}, R {r['recall']}), under half {100 * r['under_half']:.1f}%, "
                      f"{fast_rd:.1f} pages/s/core",
            "baseline": f"trafilatura default: F1 {b['f1']}, under half {100 * b['under_half']:.1f}%, "
                        f"{base_rd:.1f} pages/s/core",
            "ratio": f"speed {fast_rd / base_rd:.2f}x, F1 {r['f1'] - b['f1']:+.4f}"})
    for mode in MODES:
        if mode == REFERENCE:
            continue
        r, b = tr[mode], tr[REFERENCE]
        fast_tr, base_tr = pps(tr_cpu, len(trafilatura), mode), pps(tr_cpu, len(trafilatura), REFERENCE)
        table.append({
            "what": f"mode {mode}: {len(trafilatura)} trafilatura eval pages (snippet F1; share of pages under half "
                    "of trafilatura default's text)",
            "result": f"F1 {r['f1']}, under half {100 * r['under_half']:.1f}%, {fast_tr:.1f} pages/s/core"
                      + (f" (fell back on {100 * switched:.1f}% of pages)" if mode == "fallback" else ""),
            "baseline": f"trafilatura default: F1 {b['f1']}, {base_tr:.1f} pages/s/core",
            "ratio": f"speed {fast_tr / base_tr:.2f}x, F1 {r['f1'] - b['f1']:+.4f}"})
    table.append({
        "what": f"language accuracy, fallback text + <html lang> tie-break ({lang['pages']} readability pages with "
                "a lang)",
        "result": f"{100 * lang['fallback']:.1f}%", "baseline": f"plain trafilatura + lid.176: "
                                                                f"{100 * lang['plain_trafilatura']:.1f}%",
        "ratio": f"{lang['fallback'] - lang['plain_trafilatura']:+.4f}"})
    results = {
        "table": table, "readability": rd, "trafilatura_eval": tr, "language": lang,
        "cpu_s": {"readability": {k: round(v, 2) for k, v in rd_cpu.items()},
                  "trafilatura_eval": {k: round(v, 2) for k, v in tr_cpu.items()}},
        "fallback_switched_share": round(switched, 4), "every": args.every,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    for row in table:
        print(f"  {row['what']}: {row['result']} | {row['baseline']} | {row['ratio']}")
    return results


if __name__ == "__main__":
    main()
