"""GPT-3's quality classifier (Brown et al. 2020, appendix A): a logistic regression on hashed token counts that
tells high-quality reference text (WebText, Wikipedia, books) from unfiltered CommonCrawl, and the Pareto rule that
keeps a CommonCrawl document iff `np.random.pareto(alpha) > 1 - score`, alpha = 9.

GPT-3 used Spark's standard Tokenizer (lowercase, split on whitespace) and HashingTF; here scikit-learn's
HashingVectorizer does the same (lowercase, whitespace tokens, 2**18 features as Spark's default, term counts,
L2-normalized) and LogisticRegression fits it.

Training (`train_model`) never loads a corpus: each shard of the positive and negative inputs is a Dask task that
keeps the documents whose seeded coin (a hash of seed and document id) falls under a rate set from the row counts
in the shards' footers, and returns only their features; the fit keeps the `train_documents` lowest coins of each
class, holds out a seeded `holdout` fraction of them to measure the ROC AUC, and fits on the rest. Any number of
workers gives the same sample, hence the same model.

The model file (`.npz`, written atomically) holds the coefficients, the intercept and a JSON string of the settings
(vectorizer, training inputs and counts, held-out AUC), plus their sha256: loading needs no pickle and refuses a
file whose checksum does not match.

The Pareto draw of a document is the inverse CDF of numpy's Pareto (Lomax) distribution at a seeded coin of its
id, so whether a document is kept depends on its id, its score and the seed only, never on the order of work.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpusforge import runtime, storage
from corpusforge.documents import read_batches, unit_hash
from corpusforge.options import option

FORMAT = "corpusforge-quality-classifier/1"
GPT3_ALPHA = 9.0
SPARK_FEATURES = 1 << 18  # HashingTF's default numFeatures


@dataclasses.dataclass
class ClassifierConfig:
    """`[quality.classifier]`: which sources are scored, what the model is trained on, and the keep rule.

    `model` names a trained model file to use as it is; without it (or while it does not exist yet) a model is
    trained from `positives` (folders or globs of high-quality document shards: Wikipedia, books, WebText2) and
    `negatives` (unfiltered CommonCrawl shards) and saved there (default `<output>/_classifier.npz`). `keep =
    "pareto"` applies GPT-3's rule with `alpha`; `"all"` only records the score."""

    sources: list[str] = dataclasses.field(default_factory=lambda: ["commoncrawl"], metadata=option(
        "sources the classifier judges (none: no classifier)", flag="--classifier-sources"))
    positives: list[str] = dataclasses.field(default_factory=list, metadata=option(
        "reference shards to train the classifier on"))
    negatives: list[str] = dataclasses.field(default_factory=list, metadata=option(
        "unfiltered web shards to train it against"))
    model: str | None = dataclasses.field(default=None, metadata=option(
        "a trained model file to use, or where to save the one trained (default OUTPUT/_classifier.npz)"))
    keep: Literal["pareto", "all"] = dataclasses.field(default="pareto", metadata=option(
        "pareto: GPT-3's rule; all: only record quality_score"))
    alpha: float = dataclasses.field(default=GPT3_ALPHA, metadata=option("shape of the Pareto rule (GPT-3's)"))
    train_documents: int = dataclasses.field(default=20_000, metadata=option("documents sampled per class"))
    holdout: float = 0.1
    features: int = SPARK_FEATURES
    max_chars: int = 20_000
    regularization: float = 10.0

    def validate(self) -> None:
        if self.sources and not self.model and not (self.positives and self.negatives):
            raise ValueError("positives and negatives: give both (folders of document shards to train on), or a "
                             "trained `model`")
        if self.alpha <= 0:
            raise ValueError(f"alpha: must be positive, got {self.alpha}")
        if self.train_documents < 10:
            raise ValueError(f"train_documents: must be >= 10, got {self.train_documents}")
        if not 0.0 <= self.holdout < 0.5:
            raise ValueError(f"holdout: must be within [0, 0.5), got {self.holdout}")
        if self.features < 2 or self.features & (self.features - 1):
            raise ValueError(f"features: must be a power of two, got {self.features}")
        if self.max_chars < 100:
            raise ValueError(f"max_chars: must be >= 100, got {self.max_chars}")
        if self.regularization <= 0:
            raise ValueError(f"regularization: must be positive, got {self.regularization}")


# ---------------------------------------------------------------------------------------------------- the model
def vectorizer(features: int):
    """Spark's Tokenizer + HashingTF as scikit-learn has them: lowercase whitespace tokens, hashed term counts."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=features, lowercase=True, tokenizer=str.split, token_pattern=None,
                             alternate_sign=False, norm="l2", dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Model:
    """A trained classifier: `score` gives the probability that a text is like the reference (positive) set."""

    coef: np.ndarray  # float64 [features]
    intercept: float
    settings: dict[str, Any]

    def features(self, texts: Sequence[str]):
        """The sparse feature matrix of `texts`, each cut to the model's `max_chars`."""
        limit = self.settings["max_chars"]
        return vectorizer(self.settings["features"]).transform([t[:limit] for t in texts])

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """P(reference | text) for each text, float64."""
        if not len(texts):
            return np.zeros(0)
        return 1.0 / (1.0 + np.exp(-(self.features(texts) @ self.coef + self.intercept)))

    def _digest(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.coef, dtype="<f8").tobytes())
        h.update(np.float64(self.intercept).astype("<f8").tobytes())
        h.update(json.dumps(self.settings, sort_keys=True).encode())
        return h.hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        """Write the model atomically as an `.npz` of plain arrays and a JSON string, with its sha256."""
        # a file object: given a name, np.savez would append ".npz" to the temporary one
        with runtime.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, coef=self.coef.astype("<f8"), intercept=np.float64(self.intercept),
                     settings=np.array(json.dumps(self.settings, sort_keys=True)), sha256=np.array(self._digest()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Model:
        """Read a model file; ValueError if it is not one, is of another format, or fails its checksum."""
        try:
            with storage.open_file(path) as fh, np.load(fh, allow_pickle=False) as data:
                model = cls(coef=data["coef"].astype(np.float64), intercept=float(data["intercept"]),
                            settings=json.loads(str(data["settings"])))
                recorded = str(data["sha256"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a quality classifier model: {type(exc).__name__}: {exc}") from None
        if model.settings.get("format") != FORMAT:
            raise ValueError(f"{path}: model format {model.settings.get('format')!r}, expected {FORMAT!r}")
        if model._digest() != recorded:
            raise ValueError(f"{path}: checksum mismatch: the model file is damaged")
        if model.coef.shape != (model.settings["features"],):
            raise ValueError(f"{path}: {model.coef.shape[0]} coefficients for {model.settings['features']} features")
        return model


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, version: str) -> Model:
    return Model.load(path)


def load_model(path: str | os.PathLike) -> Model:
    """`Model.load`, cached per worker process for as long as the file (or object) is unchanged."""
    return _load_cached(str(path), json.dumps(storage.identity(path), sort_keys=True))


# ------------------------------------------------------------------------------------------------------- keeping
def pareto_draws(ids: Sequence[str], seed: int, alpha: float) -> np.ndarray:
    """One draw of numpy's `pareto(alpha)` (Lomax) per document, by inverting its CDF at the seeded coin of the id:
    the same id and seed always give the same draw."""
    coin = unit_hash(ids, seed, salt="quality-pareto")
    return (1.0 - coin) ** (-1.0 / alpha) - 1.0


def pareto_keep(ids: Sequence[str], scores: np.ndarray, seed: int, alpha: float = GPT3_ALPHA) -> np.ndarray:
    """GPT-3's rule: keep a document iff its Pareto draw exceeds 1 - score, which happens with probability
    (2 - score)^-alpha."""
    return pareto_draws(ids, seed, alpha) > 1.0 - np.asarray(scores, dtype=np.float64)


# ------------------------------------------------------------------------------------------------------ training
def _sample_shard(path: str, rate: float, seed: int, features: int, max_chars: int) -> tuple[np.ndarray, Any]:
    """Dask task: the coins and feature rows of the documents of one shard whose coin is under `rate`."""
    import scipy.sparse as sp

    coins, texts = [], []
    for batch in read_batches(path, ["id", "text"], runtime.FileReport(input=path)):  # damage: the stage reports it
        coin = unit_hash(batch.column("id").to_pylist(), seed, salt="quality-train")
        chosen = np.flatnonzero(coin < rate)
        column = batch.column("text")
        texts += [(column[int(i)].as_py() or "")[:max_chars] for i in chosen]
        coins.append(coin[chosen])
    matrix = vectorizer(features).transform(texts) if texts else sp.csr_matrix((0, features))
    return (np.concatenate(coins) if coins else np.zeros(0)), matrix


def _fit(config: ClassifierConfig, seed: int, inputs: dict[str, list[str]], n_positive: int, *parts) -> Model:
    """Dask task: the lowest-coin `train_documents` of each class (parts: the positive shards' samples first),
    a seeded hold-out for the AUC, and the fit."""
    import scipy.sparse as sp
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    xs, ys, held, counts = [], [], [], {}
    for label, group in ((1, parts[:n_positive]), (0, parts[n_positive:])):
        coins = np.concatenate([g[0] for g in group]) if group else np.zeros(0)
        order = np.argsort(coins, kind="stable")[: config.train_documents]
        xs.append(sp.vstack([g[1] for g in group]).tocsr()[order] if group else sp.csr_matrix((0, config.features)))
        ys.append(np.full(len(order), label))
        # the coin's low bits decide the hold-out: independent of its high bits, which chose the sample
        held.append((coins[order] * 2.0**30) % 1.0 < config.holdout)
        counts["positives" if label else "negatives"] = len(order)
    if min(counts.values()) < 2:
        raise ValueError(f"quality classifier: too few documents to train on: {counts}")
    x, y, held = sp.vstack(xs).tocsr(), np.concatenate(ys), np.concatenate(held)
    if len(set(y[held])) < 2 or len(set(y[~held])) < 2:
        held[:] = False
    fit = LogisticRegression(C=config.regularization, max_iter=1000)
    fit.fit(x[~held], y[~held])
    auc = float(roc_auc_score(y[held], fit.decision_function(x[held]))) if held.any() else None
    settings = {
        "format": FORMAT, "features": config.features, "max_chars": config.max_chars,
        "vectorizer": "HashingVectorizer: lowercase whitespace tokens, term counts, l2 norm, no alternate sign",
        "training": {**inputs, "seed": seed, "documents": counts, "held_out": int(held.sum()),
                     "held_out_auc": auc, "regularization": config.regularization,
                     "scikit_learn": sklearn.__version__},
    }
    return Model(coef=fit.coef_[0].astype(np.float64), intercept=float(fit.intercept_[0]), settings=settings)


def train_model(config: ClassifierConfig, seed: int, client: Any, positives: list[str],
                negatives: list[str]) -> Model:
    """Train on a seeded sample of the `positives` and `negatives` shards (see the module docstring) on `client`."""
    futures = []
    for shards in (positives, negatives):
        total = sum(_rows(p) for p in shards)
        # a little above the share needed, so the lowest coins still fill `train_documents` after chance
        rate = min(1.0, 1.2 * config.train_documents / total) if total else 0.0
        futures += [client.submit(_sample_shard, p, rate, seed, config.features, config.max_chars, pure=False)
                    for p in shards]
    inputs = {"positives": list(config.positives), "negatives": list(config.negatives)}
    return client.submit(_fit, config, seed, inputs, len(positives), *futures, pure=False).result()


def _rows(path: str) -> int:
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException, ValueError):  # a damaged shard: the stage reports it when it reads it
        return 0
