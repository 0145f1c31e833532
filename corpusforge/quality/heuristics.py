"""Heuristic quality rules: Gopher's quality and repetition rules (Rae et al. 2021, appendix A) and C4's page rules
(Raffel et al. 2020) as document-level measures, computed for a whole batch of documents at once.

`RULES` is the table: each rule compares one measure of a document with a threshold (`min`: drop below it, `max`:
drop above it) and its name is the drop reason (`dropped_<name>`). A document is dropped by the first rule it fails,
in table order. `measure` computes every measure a batch needs with Arrow's string kernels and NumPy (words, lines
and n-grams of all documents flattened into one array each, per-document sums by `bincount`), not a Python loop per
document; `bench/quality.py` measures it against the plain per-document way.

Language: a measure that is not defined for a document is NaN, and a NaN fails no rule. Word-based measures (word
counts and lengths, symbol and alphabetic ratios, n-gram repetition) are NaN for languages written without spaces
between words (`SPACELESS_LANGUAGES`), where a whitespace "word" is a whole phrase: those documents are judged by the
line, paragraph and character rules only. The stop-word count is defined only for languages with a stop-word list
(Gopher's eight English words for `en`; more can be configured).

Words are whitespace-separated tokens; lines are the non-blank lines; paragraphs are the non-blank blocks between
blank lines. The line measures and the word measures but the word and stop-word counts judge prose lines only
(`prose_lines`): blocks of code, configuration, table rows and command lines, as documentation shows them, are not
lines without punctuation, curly brackets or words without letters. Rules in `OFF_BY_DEFAULT` apply only when
enabled: on real good text they cost more than they catch (`bench/quality_rules.py`). Character fractions are over the document's length in characters. Repeated lines, paragraphs and
n-grams count from their second occurrence on (the first is not a duplicate), as datatrove and NeMo Curator do;
characters covered by overlapping duplicate n-grams are counted once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpusforge.options import option, setting

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# lid.176 labels of languages written without spaces between words (Chinese, Japanese, Thai, Lao, Khmer, Burmese,
# Tibetan, and the Wu and Cantonese varieties of Chinese).
SPACELESS_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo", "wuu", "yue"})
BULLETS = "•‣⁃◦▪▫●○■□∙*-–—"  # what list items start with, including trafilatura's "- "
TERMINAL_PUNCTUATION = ".!?\"'”’»」』。！？"
# C4's policy phrases (tensorflow_datasets c4_utils) and its "javascript" line rule, both as boilerplate lines.
BOILERPLATE_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                       "use cookies", "javascript")
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~«»“”‘’„…—–¡¿"
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)


@dataclasses.dataclass(frozen=True)
class Rule:
    """Drop a document whose `measure` is below the threshold (`bound = "min"`) or above it (`"max"`)."""

    name: str
    measure: str
    bound: Literal["min", "max"]
    default: float
    source: str

    def fails(self, values: np.ndarray, threshold: float) -> np.ndarray:
        """Where `values` break the rule (NaN, a measure not defined for the document, never does)."""
        with np.errstate(invalid="ignore"):
            return values < threshold if self.bound == "min" else values > threshold


_GOPHER_Q = "Gopher (Rae et al. 2021) A.1.1 quality filter"
_GOPHER_R = "Gopher (Rae et al. 2021) A.1.1 repetition removal, table A1"
RULES: tuple[Rule, ...] = (
    Rule("gopher_min_words", "words", "min", 50, _GOPHER_Q),
    Rule("gopher_max_words", "words", "max", 100_000, _GOPHER_Q),
    Rule("gopher_min_mean_word_length", "mean_word_length", "min", 3, _GOPHER_Q),
    Rule("gopher_max_mean_word_length", "mean_word_length", "max", 10, _GOPHER_Q),
    Rule("gopher_hash_ratio", "hashes_per_word", "max", 0.1, _GOPHER_Q),
    Rule("gopher_ellipsis_ratio", "ellipses_per_word", "max", 0.1, _GOPHER_Q),
    Rule("gopher_bullet_lines", "bullet_line_fraction", "max", 0.9, _GOPHER_Q),
    Rule("gopher_ellipsis_lines", "ellipsis_line_fraction", "max", 0.3, _GOPHER_Q),
    Rule("gopher_alpha_words", "alpha_word_fraction", "min", 0.8, _GOPHER_Q),
    Rule("gopher_stop_words", "stop_words", "min", 2, _GOPHER_Q),
    Rule("gopher_dup_lines", "dup_line_fraction", "max", 0.3, _GOPHER_R),
    Rule("gopher_dup_paragraphs", "dup_paragraph_fraction", "max", 0.3, _GOPHER_R),
    Rule("gopher_dup_line_chars", "dup_line_char_fraction", "max", 0.2, _GOPHER_R),
    Rule("gopher_dup_paragraph_chars", "dup_paragraph_char_fraction", "max", 0.2, _GOPHER_R),
    Rule("gopher_top_2gram", "top_2gram_char_fraction", "max", 0.20, _GOPHER_R),
    Rule("gopher_top_3gram", "top_3gram_char_fraction", "max", 0.18, _GOPHER_R),
    Rule("gopher_top_4gram", "top_4gram_char_fraction", "max", 0.16, _GOPHER_R),
    *(Rule(f"gopher_dup_{n}gram", f"dup_{n}gram_char_fraction", "max", round(0.15 - 0.01 * (n - 5), 2), _GOPHER_R)
      for n in DUP_NGRAMS),
    Rule("c4_lorem_ipsum", "lorem_ipsum", "max", 0, "C4 (Raffel et al. 2020): pages with 'lorem ipsum'"),
    Rule("c4_curly_bracket", "curly_brackets", "max", 0, "C4 (Raffel et al. 2020): pages with a curly bracket"),
    Rule("c4_terminal_punctuation", "terminal_punctuation_char_fraction", "min", 0.12,
         "C4's terminal-punctuation line rule as the share of prose in such lines, FineWeb's threshold"),
    Rule("c4_boilerplate_lines", "boilerplate_line_fraction", "max", 0.4,
         "C4's policy and javascript line rules as a page fraction, NeMo Curator's threshold"),
)
RULE_NAMES = tuple(r.name for r in RULES)
# Off unless `enable`d: on real good text each drops more than 0.5% of some set and catches no junk that the rules
# left on miss (bench/quality_rules.py chooses them; docs/quality.md gives the numbers).
OFF_BY_DEFAULT = ("gopher_min_mean_word_length", "gopher_alpha_words", "gopher_dup_lines",
                  *(f"gopher_dup_{n}gram" for n in DUP_NGRAMS))


@dataclasses.dataclass
class HeuristicsConfig:
    """`[quality.heuristics]`: which sources the rules apply to, and changes to the table's defaults.

    `thresholds` replaces a rule's default threshold (rule name -> number); `disable` lists rules not to apply and
    `enable` rules to apply that are off by default (`OFF_BY_DEFAULT`);
    `stop_words` maps a language code to the words `gopher_stop_words` counts (documents in other languages are not
    judged by that rule)."""

    sources: list[str] = dataclasses.field(default_factory=lambda: ["commoncrawl", "webtext2"], metadata=option(
        "sources the rules judge (none: no rules)", flag="--heuristic-sources"))
    thresholds: dict[str, float] = setting({}, "replace a rule's threshold, e.g. gopher_min_words=100 (repeatable)",
                                           flag="--threshold", metavar="RULE=NUMBER")
    disable: list[str] = setting([], "do not apply this rule (repeatable)", action="append", metavar="RULE")
    enable: list[str] = setting([], "apply this rule that is off by default, e.g. gopher_alpha_words (repeatable)",
                                action="append", metavar="RULE")
    stop_words: dict[str, list[str]] = dataclasses.field(default_factory=lambda: {"en": list(GOPHER_STOP_WORDS)})

    def validate(self) -> None:
        for key, names in (("thresholds", self.thresholds), ("disable", self.disable), ("enable", self.enable)):
            unknown = sorted(set(names) - set(RULE_NAMES))
            if unknown:
                raise ValueError(f"{key}: unknown rule(s) {unknown}; known: {', '.join(RULE_NAMES)}")

    def rules(self) -> list[tuple[Rule, float]]:
        """The rules to apply, in table order, each with its threshold."""
        return [(r, float(self.thresholds.get(r.name, r.default))) for r in RULES if r.name not in self.off()]

    def off(self) -> set[str]:
        """The rules not applied: `disable`d ones and those off by default that are not `enable`d."""
        return set(self.disable) | (set(OFF_BY_DEFAULT) - set(self.enable))


# ------------------------------------------------------------------------------------------------------ measures
def _flatten(lists: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The values of a list array and, for each, the index of the document it belongs to."""
    return lists.flatten(), pc.list_parent_indices(lists).to_numpy()


def _nonblank(values: pa.Array, doc: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """`values` stripped of surrounding whitespace, without the blank ones."""
    stripped = pc.utf8_trim_whitespace(values)
    keep = pc.greater(pc.utf8_length(stripped), 0)
    return stripped.filter(keep), doc[keep.to_numpy(zero_copy_only=False)]


def _per_doc(doc: np.ndarray, n_docs: int, weights=None) -> np.ndarray:
    return np.bincount(doc, weights=weights, minlength=n_docs).astype(np.float64)


def _repeats(values: pa.Array, doc: np.ndarray) -> np.ndarray:
    """True for each value that already occurred earlier in the same document."""
    codes = pc.dictionary_encode(values).indices.to_numpy().astype(np.int64)
    repeat = np.ones(len(codes), dtype=bool)
    if len(codes):
        _, first = np.unique(doc.astype(np.int64) * (int(codes.max()) + 1) + codes, return_index=True)
        repeat[first] = False
    return repeat


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _duplicates(values: pa.Array, doc: np.ndarray, n_docs: int, chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per document: the fraction of `values` (its lines or paragraphs) that repeat an earlier one, and the fraction
    of its characters in those repeats."""
    repeat = _repeats(values, doc)
    lengths = pc.utf8_length(values).to_numpy(zero_copy_only=False)
    return (_ratio(_per_doc(doc, n_docs, repeat), _per_doc(doc, n_docs)),
            _ratio(_per_doc(doc, n_docs, lengths * repeat), chars))


# Lines that are code, configuration, a table row or a command rather than prose: block delimiters and statement
# ends, JSON keys, markup, prompts and comments, ini sections, assignments, YAML keys, table rows (trafilatura writes
# "| a | b |") and tab-separated columns, command-line options. `prose_lines` adds short indented lines
# (extractors keep a code block's indentation), short lowercase lines without terminal punctuation (a
# command: "sudo nginx -t") and lines mostly of symbols and digits.
NOT_PROSE = "|".join((r"[{};]$", r"[}\]],?$", r"^[{}]", r"^\"[^\"]*\"\s?:", r"^</?[A-Za-z][\w-]*[\s/>]",
                      r"^(\$|#|%|>>>|>)\s", r"^\[[^\]]*\]$", r"^[\w.\-\[\]\"']+\s?=", r"^[\w.\-]+:(\s+\S+)?$",
                      r"^\|.*\|$", r"\t", r"^--?\w"))
COMMAND = r"^(sudo\s+)?[a-z][\w.+-]*(\s+\S+){0,7}$"


def prose_lines(lines: pa.Array, doc: np.ndarray, indented: np.ndarray) -> np.ndarray:
    """Which of `lines` (stripped, non-blank; `doc`: each line's document, in order; `indented`: whether it was) are
    prose. A line is not prose when it looks like code, configuration, a table row or a command (`NOT_PROSE`,
    indented, `COMMAND` without terminal punctuation, or fewer letters than other characters) and so does a line
    next to it in its document: blocks of
    such lines are what manuals and documentation show, while one such line alone among prose is judged as prose
    (an embed snippet or a stray script line)."""
    def matches(pattern: str) -> np.ndarray:
        return pc.match_substring_regex(lines, pattern).to_numpy(zero_copy_only=False)

    visible = pc.utf8_length(pc.replace_substring_regex(lines, r"\s", "")).to_numpy(zero_copy_only=False)
    letters = pc.utf8_length(pc.replace_substring_regex(lines, r"[^\pL]", "")).to_numpy(zero_copy_only=False)
    other = (matches(NOT_PROSE) | (matches(COMMAND) & ~matches(f"[{re.escape(TERMINAL_PUNCTUATION)}]$"))
             | (2 * letters < visible) | indented)
    same_doc = doc[1:] == doc[:-1]
    after = np.zeros(len(other), dtype=bool)  # the line before is in the same document and not prose either
    after[1:] = other[:-1] & same_doc
    before = np.zeros(len(other), dtype=bool)
    before[:-1] = other[1:] & same_doc
    return ~(other & (after | before))


def _line_measures(lines: pa.Array, doc: np.ndarray, texts: pa.Array, n_docs: int,
                   chars: np.ndarray) -> dict[str, np.ndarray]:
    """The line measures over prose `lines` (`doc`: their documents), and the paragraph measures over `texts`."""
    n_lines = _per_doc(doc, n_docs)
    line_chars = pc.utf8_length(lines).to_numpy(zero_copy_only=False).astype(np.float64)
    punctuated = pc.match_substring_regex(lines, f"[{re.escape(TERMINAL_PUNCTUATION)}]$").to_numpy(
        zero_copy_only=False)

    def fraction(pattern: str, ignore_case: bool = False) -> np.ndarray:
        hits = pc.match_substring_regex(lines, pattern, ignore_case=ignore_case).to_numpy(zero_copy_only=False)
        return _ratio(_per_doc(doc, n_docs, hits), n_lines)

    out = {
        "curly_brackets": _per_doc(doc, n_docs, pc.count_substring(lines, "{").to_numpy(zero_copy_only=False)),
        "bullet_line_fraction": fraction(f"^[{re.escape(BULLETS)}]"),
        "ellipsis_line_fraction": fraction(r"(\.\.\.|…)$"),
        "terminal_punctuation_char_fraction": _ratio(_per_doc(doc, n_docs, line_chars * punctuated),
                                                     _per_doc(doc, n_docs, line_chars)),
        "boilerplate_line_fraction": fraction("|".join(map(re.escape, BOILERPLATE_PHRASES)), ignore_case=True),
    }
    out["dup_line_fraction"], out["dup_line_char_fraction"] = _duplicates(lines, doc, n_docs, chars)
    paragraphs, pdoc = _nonblank(*_flatten(pc.split_pattern_regex(texts, r"\n[ \t\r\f\v]*\n")))
    out["dup_paragraph_fraction"], out["dup_paragraph_char_fraction"] = _duplicates(paragraphs, pdoc, n_docs, chars)
    return out


def _stop_words(words: pa.Array, doc: np.ndarray, langs: np.ndarray, stop_words: dict[str, Sequence[str]],
                n_docs: int) -> np.ndarray:
    """Per document, how many of its words (lowercased, surrounding punctuation removed) are stop words of its
    language; NaN for languages without a list."""
    count = np.full(n_docs, np.nan)
    if not stop_words:
        return count
    normalized = pc.utf8_lower(pc.utf8_trim(words, characters=PUNCTUATION))
    for lang, listed in stop_words.items():
        in_lang = langs == lang
        if not in_lang.any():
            continue
        hits = pc.is_in(normalized, value_set=pa.array(list(listed), pa.string())).to_numpy(zero_copy_only=False)
        count[in_lang] = _per_doc(doc, n_docs, hits & in_lang[doc])[in_lang]
    return count


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constants of a multiplicative hash (golden ratio, splitmix64)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)


def _ngram_measures(codes: np.ndarray, doc: np.ndarray, lengths: np.ndarray, n_docs: int, chars: np.ndarray,
                    top: Sequence[int], dup: Sequence[int]) -> dict[str, np.ndarray]:
    """Per document, for each n in `top` the characters of its most frequent word n-gram times its count (0 when no
    n-gram repeats), and for each n in `dup` the characters of the words covered by repeated n-grams, as fractions
    of `chars`. An n-gram's characters are those of its words (without the spaces between them).

    An n-gram is a 64-bit hash of its document and word codes, so one sort brings the occurrences of each n-gram of
    each document together; the lowest position in a group is the first occurrence. n grows one word at a time,
    and only n-grams that repeat are extended (an n-gram can repeat only if its first n-1 words do), so after the
    first few n the sorts are small."""
    out: dict[str, np.ndarray] = {}
    word_end = np.concatenate([[0], np.cumsum(lengths)])
    wanted = set(top) | set(dup)
    n0 = min(wanted)
    start = np.flatnonzero(doc[:max(len(codes) - n0 + 1, 0)] == doc[n0 - 1:])  # n-grams inside one document
    key = doc[start].astype(np.uint64) * _MIX2
    for j in range(n0):
        key = (key ^ codes[start + j].astype(np.uint64)) * _MIX
    for n in range(n0, max(wanted) + 1):
        if n > n0:  # extend the repeated (n-1)-grams by their next word, where it is in the same document
            inside = start + n - 1 < len(codes)
            inside[inside] = doc[start[inside] + n - 1] == doc[start[inside]]
            start, key = start[inside], key[inside]
            key = (key ^ codes[start + n - 1].astype(np.uint64)) * _MIX
        order = np.argsort(key)
        key, start = key[order], start[order]
        is_start = np.ones(len(key), dtype=bool)
        is_start[1:] = key[1:] != key[:-1]
        group_start = np.flatnonzero(is_start)
        group = np.cumsum(is_start) - 1
        count = np.diff(np.append(group_start, len(key)))
        first = np.minimum.reduceat(start, group_start) if len(start) else start
        if n in top:
            most = np.zeros(n_docs, dtype=np.int64)
            np.maximum.at(most, doc[first], count)
            # the most frequent n-gram (the longest of equally frequent ones), if it occurs more than once
            chosen = (count == most[doc[first]]) & (count > 1)
            best = np.zeros(n_docs)
            np.maximum.at(best, doc[first][chosen], ((word_end[first + n] - word_end[first]) * count)[chosen])
            out[f"top_{n}gram_char_fraction"] = _ratio(best, chars)
        if n in dup:
            repeated = start[start != first[group]]
            # words covered by a repeated n-gram: +1 where one starts, -1 after its last word, running sum > 0
            depth = np.cumsum(np.bincount(repeated, minlength=len(codes) + 1)[:-1]
                              - np.bincount(repeated + n, minlength=len(codes) + n + 1)[:len(codes)])
            out[f"dup_{n}gram_char_fraction"] = _ratio(_per_doc(doc, n_docs, lengths * (depth > 0)), chars)
        again = count[group] > 1
        start, key = start[again], key[again]
    return out


TEXT_MEASURES = frozenset({"lorem_ipsum"})
LINE_MEASURES = frozenset({"curly_brackets", "bullet_line_fraction", "ellipsis_line_fraction",
                           "terminal_punctuation_char_fraction", "boilerplate_line_fraction", "dup_line_fraction",
                           "dup_line_char_fraction", "dup_paragraph_fraction", "dup_paragraph_char_fraction"})
WORD_MEASURES = frozenset({"words", "mean_word_length", "hashes_per_word", "ellipses_per_word", "alpha_word_fraction",
                            "stop_words", *(f"top_{n}gram_char_fraction" for n in TOP_NGRAMS),
                            *(f"dup_{n}gram_char_fraction" for n in DUP_NGRAMS)})


def measure(texts: pa.Array | Sequence[str], langs: pa.Array | Sequence[str], needed: set[str] | None = None,
            stop_words: dict[str, Sequence[str]] | None = None) -> dict[str, np.ndarray]:
    """The measures of a batch of documents (`needed`, default every one `RULES` uses), one float64 array each.
    `stop_words` maps languages to their stop words (default: Gopher's English ones)."""
    texts = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.string())
    texts = pc.fill_null(texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts, "")
    langs = np.asarray(langs.to_pylist() if isinstance(langs, (pa.Array, pa.ChunkedArray)) else list(langs),
                       dtype=object)
    needed = set(needed if needed is not None else (r.measure for r in RULES))
    stop_words = {"en": GOPHER_STOP_WORDS} if stop_words is None else stop_words
    n_docs = len(texts)
    chars = pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.float64)
    out: dict[str, np.ndarray] = {}

    def counts(array: pa.Array) -> np.ndarray:
        return array.to_numpy(zero_copy_only=False).astype(np.float64)

    if needed & TEXT_MEASURES:
        out["lorem_ipsum"] = counts(pc.count_substring_regex(texts, "lorem ipsum", ignore_case=True))
    if not needed & (LINE_MEASURES | WORD_MEASURES):
        return {k: v for k, v in out.items() if k in needed}
    raw, ldoc = _flatten(pc.split_pattern(texts, "\n"))
    nonblank = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(raw)), 0).to_numpy(zero_copy_only=False)
    # indented and short: a line of a code block (long indented lines are wrapped prose, as in a plain-text RFC)
    indented = pc.match_substring_regex(raw, r"^( {2,}|\t)\S+(\s+\S+){0,5}\s*$").to_numpy(
        zero_copy_only=False)[nonblank]
    lines, ldoc = pc.utf8_trim_whitespace(raw.filter(pa.array(nonblank))), ldoc[nonblank]
    prose = prose_lines(lines, ldoc, indented)
    if needed & LINE_MEASURES:
        out.update(_line_measures(lines.filter(pa.array(prose)), ldoc[prose], texts, n_docs, chars))
    if needed & WORD_MEASURES:
        words, line = _flatten(pc.utf8_split_whitespace(lines))
        doc, in_prose = ldoc[line], prose[line]
        lengths = counts(pc.utf8_length(words))
        out["words"] = _per_doc(doc, n_docs)
        out["stop_words"] = _stop_words(words, doc, langs, stop_words, n_docs)
        # the other word measures judge prose: a path, an option or a number in a listing is not a bad word
        words, doc, lengths = words.filter(pa.array(in_prose)), doc[in_prose], lengths[in_prose]
        n_words = _per_doc(doc, n_docs)
        prose_text = lines.filter(pa.array(prose))
        pdoc = ldoc[prose]
        out["mean_word_length"] = _ratio(_per_doc(doc, n_docs, lengths), n_words)
        out["hashes_per_word"] = _ratio(_per_doc(pdoc, n_docs, counts(pc.count_substring(prose_text, "#"))), n_words)
        out["ellipses_per_word"] = _ratio(_per_doc(pdoc, n_docs, counts(
            pc.count_substring_regex(prose_text, r"\.\.\.|…"))), n_words)
        alpha = pc.match_substring_regex(words, r"\pL").to_numpy(zero_copy_only=False)
        out["alpha_word_fraction"] = _ratio(_per_doc(doc, n_docs, alpha), n_words)
        top = [n for n in TOP_NGRAMS if f"top_{n}gram_char_fraction" in needed]
        dup = [n for n in DUP_NGRAMS if f"dup_{n}gram_char_fraction" in needed]
        if top or dup:
            codes = pc.dictionary_encode(words).indices.to_numpy(zero_copy_only=False)
            out.update(_ngram_measures(codes, doc, lengths, n_docs, chars, top, dup))
        spaceless = np.isin(langs, list(SPACELESS_LANGUAGES))
        for name in WORD_MEASURES & set(out):
            out[name][spaceless] = np.nan
    return {k: v for k, v in out.items() if k in needed}


def failures(measures: dict[str, np.ndarray], rules: Sequence[tuple[Rule, float]], n_docs: int) -> np.ndarray:
    """Which documents each rule drops on its own: a (rules, documents) boolean array."""
    out = np.zeros((len(rules), n_docs), dtype=bool)
    for i, (rule, threshold) in enumerate(rules):
        out[i] = rule.fails(measures[rule.measure], threshold)
    return out


def first_failed(measures: dict[str, np.ndarray], rules: Sequence[tuple[Rule, float]], n_docs: int) -> np.ndarray:
    """For each document the index in `rules` of the first rule it fails, or -1 if it passes them all."""
    failed = failures(measures, rules, n_docs)
    return np.where(failed.any(axis=0), failed.argmax(axis=0), -1)
