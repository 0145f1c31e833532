"""What the default quality rules take from real good text and catch in junk (bench/goodtext.py's sets, measured
as bench/quality_rules.py measures them): all rules together drop at most the measured floor of each real good set,
every junk case is still dropped, and documentation pages with configuration excerpts, command listings and tables
are kept."""

from __future__ import annotations

import numpy as np
import pytest

from corpusforge.quality import HeuristicsConfig, heuristics

# Measured with the defaults (bench/results/quality_rules.json): trafilatura 4.9%, readability 4.3%, Wikipedia 3.0%,
# Gutenberg 1.0%, WARC articles 0%, documentation pages 0%. The tests read the first 80 trafilatura pages (6.2%
# dropped: the first pages are harder than the rest) and 8 Gutenberg novels, and leave a little room.
FLOORS = {"trafilatura": 0.07, "readability": 0.05, "wikipedia": 0.035, "gutenberg": 0.02, "warc": 0.0, "docs": 0.0}


def dropped(docs: list[dict], config: HeuristicsConfig | None = None) -> np.ndarray:
    from bench.quality_rules import shares

    return shares(docs, config or HeuristicsConfig())["all"]


@pytest.fixture(scope="module")
def good(shared_data) -> dict[str, list[dict]]:
    from bench import goodtext

    return {"trafilatura": goodtext.trafilatura_pages(limit=80), "readability": goodtext.readability_pages(),
            "wikipedia": goodtext.wikipedia_articles(), "gutenberg": goodtext.gutenberg_parts(books=8),
            "warc": goodtext.warc_articles(), "docs": goodtext.docs_pages()}


@pytest.mark.parametrize("name", list(FLOORS))
def test_default_rules_drop_little_of_each_real_good_set(good, name):
    docs = good[name]
    assert len(docs) >= 3
    share = dropped(docs).mean()
    assert share <= FLOORS[name], f"{name}: {share:.1%} of {len(docs)} dropped"


def test_every_junk_case_is_dropped_but_boilerplate_only_pages():
    from bench import goodtext

    junk = goodtext.junk_pages()
    missed = {j["kind"] for j, hit in zip(junk, dropped(junk)) if not hit}
    # a page of menus and footer lines alone passes the rules: extraction removes such text before them
    assert missed == {"boilerplate only"}
    assert {j["kind"] for j in junk if j["kind"].startswith("sample: ")} == {
        "sample: seeds-shop", "sample: council-tag", "sample: sample-page", "sample: recipe-embed"}


def test_documentation_with_config_and_command_listing_is_kept_by_default():
    from bench import goodtext

    docs = goodtext.docs_pages()
    assert not dropped(docs).any()
    # the same pages judged as the rules judged before, every line as prose, lose most of them to C4's rules
    nginx = next(d for d in docs if d["name"] == "nginx-reverse-proxy")
    assert "server {" in nginx["text"] and "sudo nginx -t" in nginx["text"]
    lines = [line.strip() for line in nginx["text"].split("\n") if line.strip()]
    import pyarrow as pa

    prose = heuristics.prose_lines(pa.array(lines), np.zeros(len(lines), dtype=np.int64),
                                   np.zeros(len(lines), dtype=bool))
    judged = dict(zip(lines, prose))
    assert not judged["sudo nginx -t"] and not judged["proxy_pass http://127.0.0.1:8080;"]
    assert not judged["| proxy_read_timeout | 60s | time between two successive reads from the upstream |"]
    assert judged["Enable the site and reload nginx:"]


def test_a_lone_code_line_in_prose_is_judged_as_prose():
    text = ("You are welcome to share this recipe on your own website. Copy the code below and paste it here.\n"
            '<script>recipeCard({"recipe": "soup"});</script>\n'
            "The card is free to use for personal and community websites, and it links back to the recipe.")
    assert heuristics.measure([text], ["en"])["curly_brackets"][0] == 1


def test_rules_off_by_default_can_be_enabled():
    config = HeuristicsConfig()
    assert "gopher_alpha_words" in config.off() and "gopher_alpha_words" not in {r.name for r, _ in config.rules()}
    enabled = HeuristicsConfig(enable=["gopher_alpha_words"], disable=["c4_curly_bracket"])
    names = {r.name for r, _ in enabled.rules()}
    assert "gopher_alpha_words" in names and "c4_curly_bracket" not in names
    with pytest.raises(ValueError, match="enable: unknown rule"):
        HeuristicsConfig(enable=["gopher_alpah_words"]).validate()


def test_report_shows_each_rules_drops_per_source_and_language_beside_its_measured_false_drops():
    from corpusforge.quality import false_drops
    from corpusforge.stats.collect import drops_by_source_lang, rule_costs
    from corpusforge.stats.tables import measured_cost, rule_shares

    counts = {"documents": 30, "kept": 26, "dropped_c4_curly_bracket": 3, "dropped_gopher_stop_words": 1,
              "commoncrawl:en:documents": 20, "commoncrawl:en:dropped_c4_curly_bracket": 2,
              "commoncrawl:de:documents": 5, "commoncrawl:de:dropped_c4_curly_bracket": 1,
              "webtext2:en:documents": 5, "webtext2:en:dropped_gopher_stop_words": 1, "commoncrawl:kept": 22}
    stage = {"stage": "quality", "drops": {k: v for k, v in counts.items() if k.startswith("dropped_")},
             "drops_by_source_lang": drops_by_source_lang(counts)}
    rows = {r["rule"]: r for r in rule_costs([stage])}
    assert rows["c4_curly_bracket"]["shares"] == {"commoncrawl:en": 0.1, "commoncrawl:de": 0.2}
    assert rule_shares(rows["c4_curly_bracket"]) == "commoncrawl:de 20.0%, commoncrawl:en 10.0%"
    measured = false_drops.load()
    assert measured is not None, "run bench/quality_rules.py: it writes corpusforge/quality/false_drops.json"
    worst = max(s["rules"]["c4_curly_bracket"] for s in measured["sets"].values())
    assert rows["c4_curly_bracket"]["good_max"] == worst  # the measured number, read from the benchmark's file
    good, junk = measured_cost(rows["c4_curly_bracket"])
    assert good.startswith(f"{worst:.1%}") and junk.endswith("%")
