"""`corpusforge stats --html`: one self-contained HTML page (plots as inline base64 PNG, inline CSS, no scripts,
nothing fetched) with the corpus tables and six plots: source mix vs weights, languages, document lengths per
set, quality scores per set, the corpus funnel (per source, what each stage kept), and what each stage removed;
then what decontamination cut per evaluation set, examples of what the quality rules and deduplication removed,
one collapsed section per reason, and the errors the stages reported."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from corpusforge.stats.funnel import FUNNEL_STEPS, funnel_row
from corpusforge.stats.tables import (DECONTAMINATION_HEADERS, FUNNEL_HEADERS, decontamination_rows, drop_panels,
                                      funnel_rows, length_summary, measured_cost, rule_shares, score_summary,
                                      stage_reasons, top_languages)

PLOTS = ("source-mix", "languages", "lengths", "quality-scores", "funnel", "drops")
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
.warn { color: #a60; }
.bad { color: #b00; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; }
details { margin: 0.4em 0; }
summary { cursor: pointer; }
.example { margin: 0.6em 0 0.6em 1.5em; }
.pair { border-left: 3px solid #ccc; margin: 0.8em 0; padding-left: 0.5em; }
.example pre { white-space: pre-wrap; background: #f6f6f6; padding: 0.5em; margin: 0.2em 0; font-size: 0.85em; }
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(plot_id: str, caption: str, fig) -> str:
    return (f'<figure id="plot-{plot_id}"><img alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{_png(fig)}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def _source_mix(stats: dict[str, Any]):
    from matplotlib.figure import Figure

    sets = stats["sets"]
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    x = range(len(sets))
    width = 0.27
    for i, (key, label) in enumerate((("recipe_share", "recipe weight (normalized)"), ("weight", "weight used"),
                                      ("token_share", "share of corpus tokens"))):
        ax.bar([p + (i - 1) * width for p in x], [s[key] for s in sets], width, label=label)
    ax.set_xticks(list(x), [s["name"] for s in sets])
    ax.set_ylabel("share")
    ax.legend()
    ax.set_title("source mix: what the trainer reads (weights) vs what the corpus holds (tokens)")
    return fig


def _languages(stats: dict[str, Any], top: int = 8):
    from matplotlib.figure import Figure

    sets = stats["sets"]
    languages = list(stats["overall"]["languages"])[:top]
    fig = Figure(figsize=(8, 0.6 + 0.45 * len(sets)))
    ax = fig.subplots()
    left = [0.0] * len(sets)
    for lang in [*languages, "other"]:
        shares = []
        for s in sets:
            total = sum(s["languages"].values()) or 1
            n = (sum(v for k, v in s["languages"].items() if k not in languages) if lang == "other"
                 else s["languages"].get(lang, 0))
            shares.append(n / total)
        ax.barh([s["name"] for s in sets], shares, left=left, label=lang)
        left = [a + b for a, b in zip(left, shares)]
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share of documents")
    ax.legend(ncol=min(len(languages) + 1, 9), fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return fig


def _lengths(stats: dict[str, Any]):
    from matplotlib.figure import Figure

    sets = stats["sets"]
    fig = Figure(figsize=(8, 1.7 * len(sets) + 0.5))
    axes = fig.subplots(len(sets), 1, sharex=True, squeeze=False)[:, 0]
    for ax, s in zip(axes, sets):
        hist = s["length_histogram"]
        if hist["counts"]:
            ax.stairs(hist["counts"], hist["edges"], fill=True)
        ax.set_xscale("log")
        ax.set_ylabel("documents")
        empty = f"; {hist['empty']} empty" if hist["empty"] else ""
        ax.set_title(f"{s['name']}: tokens per document, median {length_summary(s['length'])}{empty}",
                     fontsize="medium")
    axes[-1].set_xlabel("tokens per document (log scale)")
    fig.tight_layout()
    return fig


def _quality_scores(stats: dict[str, Any]):
    from matplotlib.figure import Figure

    sets = [s for s in stats["sets"] if s["quality_score"]]
    fig = Figure(figsize=(8, 1.7 * max(len(sets), 1) + 0.5))
    axes = fig.subplots(max(len(sets), 1), 1, sharex=True, squeeze=False)[:, 0]
    if not sets:
        axes[0].text(0.5, 0.5, "no document of the corpus has a quality_score", ha="center", va="center")
        axes[0].set_axis_off()
        return fig
    for ax, s in zip(axes, sets):
        score = s["quality_score"]
        ax.stairs(score["histogram"]["counts"], score["histogram"]["edges"], fill=True)
        ax.set_xlim(0, 1)
        ax.set_ylabel("documents")
        ax.set_title(f"{s['name']}: {score['documents']:,} of {s['documents']:,} documents scored, "
                     f"p10 / p50 / p90 {score_summary(score)}", fontsize="medium")
    axes[-1].set_xlabel("quality_score (the classifier's probability that a document is like the reference text)")
    fig.tight_layout()
    return fig


def _drops(stats: dict[str, Any]):
    """What each stage removed, on linear scales, one panel per unit: records the sources set aside while reading
    (WARC bookkeeping in grey, apart from records dropped for a reason), documents dropped, and errors."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = [(unit, rows) for unit, rows in drop_panels(stats) if rows]
    fig = Figure(figsize=(8, 0.9 * max(len(panels), 1) + 0.3 * sum(len(r) for _, r in panels) + 0.4))
    if not panels:
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no removals recorded by any stage", ha="center", va="center")
        ax.set_axis_off()
        return fig
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [len(r) + 1.5 for _, r in panels]})[:, 0]
    for ax, (unit, rows) in zip(axes, panels):
        ax.barh([label[:70] for label, _, _ in rows], [n for _, n, _ in rows],
                color=["#999999" if grey else "C0" for _, _, grey in rows])
        ax.invert_yaxis()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no fractions of a record on the axis
        ax.set_xlabel(unit)
    axes[0].set_title("what each stage removed, and why (grey: WARC bookkeeping records, not pages)")
    fig.tight_layout()
    return fig


def _funnel(stats: dict[str, Any]):
    """The funnel in bytes: a bar per step, stacked by source (a source a stage did not see passes through it)."""
    from matplotlib.figure import Figure

    funnel = stats.get("funnel", {})
    fig = Figure(figsize=(8, 3.8))
    ax = fig.subplots()
    left = [0.0] * len(FUNNEL_STEPS)
    for source, steps in funnel.items():
        values, last = [], 0
        for name in FUNNEL_STEPS:
            step = next((s for s in steps if funnel_row(s) == name), None)
            last = step["bytes"] if step is not None and step["bytes"] is not None else last
            values.append(last)
        ax.barh(list(FUNNEL_STEPS), values, left=left, label=source)
        left = [a + b for a, b in zip(left, values)]
    if not funnel:
        ax.text(0.5, 0.5, "no source stage found beside the corpus", ha="center", va="center")
        ax.set_axis_off()
        return fig
    ax.invert_yaxis()
    ax.set_xlabel("bytes: input files as stored, then HTML bodies, then UTF-8 text")
    ax.legend(fontsize="small")
    ax.set_title("the corpus funnel: bytes per source at every stage")
    fig.tight_layout()
    return fig


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _dropped_examples(stats: dict[str, Any]) -> list[str]:
    """Per stage with a sample of dropped documents, each reason (with its threshold) as a collapsed <details>
    with its examples."""
    parts = []
    for stage in stats["stages"]:
        thresholds = stage.get("thresholds") or {}
        for reason, sample in (stage.get("dropped_sample") or {}).items():
            dropped = stage["drops"].get(f"dropped_{reason}")
            limit = f" (threshold {thresholds[reason]:g})" if reason in thresholds else ""
            head = (f"{stage['stage']}: {reason}{limit}: {'-' if dropped is None else f'{dropped:,}'} dropped; "
                    f"{sample['sampled']:,} in the sample, {len(sample['examples'])} shown")
            parts.append(f"<details><summary>{html.escape(head)}</summary>"
                         + "".join(_example(e, thresholds.get(reason)) for e in sample["examples"]) + "</details>")
    return parts


def _duplicate_examples(stats: dict[str, Any]) -> list[str]:
    """Per kind of duplicate (url, exact, near) a collapsed <details>: the copy removed beside the copy kept."""
    parts = []
    for stage in stats["stages"]:
        for kind, rows in (stage.get("duplicate_examples") or {}).items():
            removed = (stage["drops"] or {}).get(f"removed_{kind}")
            head = f"{stage['stage']}: {kind}: {'-' if removed is None else f'{removed:,}'} removed; {len(rows)} shown"
            parts.append(f"<details><summary>{html.escape(head)}</summary>"
                         + "".join(_duplicate(e) for e in rows) + "</details>")
    return parts


def _duplicate(example: dict[str, Any]) -> str:
    def side(what: str) -> str:
        doc = example[what] or {}
        meta = (f"{what}: {example[f'{what}_source']} · {doc.get('url') or '-'} · id {example[f'{what}_id']}")
        return (f'<div class="example"><div>{html.escape(meta)}</div>'
                f'<pre>{html.escape(doc.get("text") or "(text not found in the stage inputs)")}</pre></div>')

    similarity = "-" if example["jaccard"] is None else f"{example['jaccard']:.3f}"
    return (f'<div class="pair"><div>estimated Jaccard similarity {html.escape(similarity)}</div>'
            f'{side("removed")}{side("kept")}</div>')


def _error_list(stats: dict[str, Any]) -> list[str]:
    """Every stage's first error lines (file, offset, reason; expected ones marked), escaped: a reason can quote
    the damaged input."""
    rows = [[stage["stage"], e["level"], e["file"] or "-", "-" if e["offset"] is None else e["offset"], e["reason"],
             e["expected"] or ""] for stage in stats["stages"] for e in stage.get("error_lines") or []]
    if not rows:
        return ["<h2 id=\"errors\">Errors</h2><p>No stage reported an error or a warning.</p>"]
    return ['<h2 id="errors">Errors</h2>',
            "<p>The first lines of each stage's <code>_errors.jsonl</code> (all of them are there): damaged input "
            "costs only itself, and is reported with its file and offset (or line).</p>",
            _table(["stage", "level", "file", "offset", "reason", "expected"], rows)]


def _decontamination(stats: dict[str, Any]) -> list[str]:
    """The decontamination section: per evaluation set its dirty and clean examples and what was cut, then a few
    of the n-grams cut, as the documents wrote them (escaped: they are corpus text)."""
    rows = decontamination_rows(stats)
    if not rows:
        return []
    parts = ['<h2 id="decontamination">Decontamination</h2>',
             ("<p>Training text sharing an n-gram with an evaluation set was cut with its margins "
              "(<code>_decontamination.parquet</code>); an example is dirty when one of its n-grams was found in "
              "training (<code>_dirty_examples.parquet</code>): score the clean ones for an uncontaminated "
              "result.</p>"), _table(DECONTAMINATION_HEADERS, rows)]
    for stage in stats["stages"]:
        for name, s in ((stage.get("decontamination") or {}).get("eval_sets") or {}).items():
            if s["cut"]:
                parts.append(f"<details><summary>{html.escape(name)}: n-grams cut</summary>"
                             + "".join(_cut_example(c) for c in s["cut"]) + "</details>")
    return parts


def _cut_example(cut: dict[str, Any]) -> str:
    meta = f"example {cut['example_id']} · {cut['source']} · document {cut['document_id']} · {cut['action']}"
    return f'<div class="example"><div>{html.escape(meta)}</div><pre>{html.escape(cut["ngram"])}</pre></div>'


def _example(example: dict[str, Any], threshold: float | None = None) -> str:
    where = example["url"] or " ".join(str(v) for v in (example["origin_file"], example["origin_offset"],
                                                         example["origin_id"]) if v is not None)
    value = "-" if example["value"] is None else f"{example['value']:.4g}"
    limit = "" if threshold is None else f" (threshold {threshold:g})"
    meta = f"{example['source']} · {where} · value {value}{limit} · id {example['id']}"
    return f'<div class="example"><div>{html.escape(meta)}</div><pre>{html.escape(example["text"])}</pre></div>'


def render(stats: dict[str, Any]) -> str:
    """The report as one HTML string."""
    def num(v: Any) -> str:
        return "-" if v is None else (f"{v:,.2f}" if isinstance(v, float) else f"{v:,}")

    sets_rows = [[s["name"], s["source"], num(s["documents"]), num(s["tokens"]), num(s["bytes"]),
                  f"{s['recipe_weight']:.3f}", f"{s['weight']:.3f}", f"{s['token_share']:.3f}", num(s["epochs"]),
                  num(s["max_epochs"]), top_languages(s["languages"]), length_summary(s["length"])]
                 for s in stats["sets"]]
    o = stats["overall"]
    sets_rows.append(["total", "", num(o["documents"]), num(o["tokens"]), num(o["bytes"]), "", "1.000", "1.000", "",
                      "", top_languages(o["languages"]), length_summary(o["length"])])
    stage_rows = [[st["stage"], num(st["files"]), num(st["documents"]), f"{st['seconds']:,.1f}",
                   "; ".join(f"{reason} {n:,}" for reason, n in stage_reasons(st)) or "-"] for st in stats["stages"]]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>corpusforge report: {html.escape(stats['corpus'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Corpus report</h1><p>{html.escape(stats['corpus'])}: {num(o['documents'])} documents, "
        f"{num(o['tokens'])} tokens, tokenizer vocabulary {num(stats['tokenizer']['vocab_size'])}; "
        f"epochs are for a budget of {num(stats['budget_tokens'])} training tokens.</p>",
        "<h2>Sets</h2>",
        _table(["set", "source", "documents", "tokens", "bytes", "recipe weight", "weight", "token share", "epochs",
                "max epochs", "languages", "tokens/doc p50 (p10-p90)"], sets_rows),
        *(f'<p class="warn">warning: {html.escape(w)}</p>' for w in stats["warnings"]),
        *(f'<p class="bad">unreadable shard {html.escape(u["path"])}: {html.escape(u["problem"])}</p>'
          for u in stats["unreadable_shards"]),
    ]
    verify = stats.get("verify")
    if verify is not None:
        parts.append(f"<p>verify: {verify['checked_files']} files match the manifest's checksums.</p>" if verify["ok"]
                     else "".join(f'<p class="bad">verify: {html.escape(p["path"])}: {html.escape(p["problem"])}</p>'
                                  for p in verify["problems"]))
    parts += [
        "<h2>Source mix</h2>", _figure("source-mix", "source mix vs weights", _source_mix(stats)),
        "<h2>Languages</h2>", _figure("languages", "language distribution per set (share of documents)",
                                      _languages(stats)),
        "<h2>Document lengths</h2>", _figure("lengths", "tokens per document, per set", _lengths(stats)),
        "<h2>Quality scores</h2>", _figure("quality-scores", "quality_score per set", _quality_scores(stats)),
        '<h2 id="funnel">The corpus funnel</h2>',
        ("<p>Per source, what was left after each stage of this run (from the stages' <code>_summary.json</code>): "
         "records or pages while the sources read them, then documents; bytes of the input files as stored, then "
         "of the HTML bodies, then of the documents' UTF-8 text. Each step says how it came from the one before: "
         "dropped for a reason, WARC bookkeeping records (request, metadata, warcinfo, revisit) set apart, failed, "
         "or split into parts and pieces.</p>"),
        _table(FUNNEL_HEADERS, funnel_rows(stats)) if stats.get("funnel") else "<p>No source stage was found.</p>",
        _figure("funnel", "the corpus funnel in bytes, per source", _funnel(stats)),
        "<h2>What each stage removed</h2>",
        _table(["stage", "files", "documents", "seconds", "removed or failed (reason and count)"], stage_rows) if stage_rows else "<p>No stage summaries were found beside the corpus.</p>",
        _figure("drops", "drop reasons per stage", _drops(stats)),
    ]
    if stats.get("quality_rules"):
        parts += ['<h2 id="quality-rules">What each quality rule dropped, and what it costs</h2>',
                  ("<p>The share of each source and language a rule dropped in this run, beside the share of real "
                   "good text it drops and of junk it catches, as <code>bench/quality_rules.py</code> measured them "
                   "(see docs/quality.md).</p>"),
                  _table(["rule", "threshold", "dropped", "share per source:language",
                          "good text dropped (worst set)", "junk caught"],
                         [[r["rule"], num(r.get("threshold")), num(r["dropped"]), rule_shares(r, 8), *measured_cost(r)]
                          for r in stats["quality_rules"]])]
    parts += _decontamination(stats)
    examples = _dropped_examples(stats)
    if examples:
        parts += ['<h2 id="quality-dropped">What the quality rules removed</h2>',
                  ("<p>Each reason's sample of dropped documents (<code>_dropped.parquet</code>, chosen by a seeded "
                   "hash of their id): the value of the measure that failed beside the rule's threshold (the "
                   "classifier's score for <code>classifier</code>) and the start of the text.</p>"), *examples]
    duplicates = _duplicate_examples(stats)
    if duplicates:
        parts += ['<h2 id="dedup-removed">What deduplication removed</h2>',
                  ("<p>The first duplicates of each kind in <code>_duplicates.parquet</code>: the copy removed "
                   "beside the copy kept (an older capture of the same URL, the same text, or a near duplicate by "
                   "MinHash).</p>"), *duplicates]
    parts += _error_list(stats)
    parts.append("</body></html>")
    return "\n".join(parts)
