"""Document shards for the dedup tests: real web text (697 CommonCrawl documents from dolma's test data) and
Gutenberg's Persuasion twin (105/106), with planted duplicates whose edits and true similarity are known."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from corpusforge import documents, runtime, schema

CC_JSONL = "webtext/dolma-testdata/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz"
BOILERPLATE = (
    "We use cookies to improve your experience on our website. By continuing to browse you agree to our use of "
    "cookies as described in our privacy policy and terms of service. You can change your cookie settings at any "
    "time. Sign up for our newsletter to receive the latest news, exclusive offers and updates from our editors "
    "straight to your inbox every week. Follow us on social media and share our stories with your friends. "
    "Copyright all rights reserved. Contact us about advertising, careers, press enquiries, accessibility, "
    "reprints and permissions, corrections and the help centre. Our site map lists every section, from home, "
    "news, sport, business, culture, travel, weather and opinion to podcasts, video, games and the archive.")
NAV = ["Home", "About us", "Products and services", "Contact", "Blog", "Frequently asked questions", "Login"]


@dataclasses.dataclass
class Planted:
    """Ground truth: groups of document ids that are duplicates of each other, and ids that must all survive."""

    groups: list[list[str]] = dataclasses.field(default_factory=list)
    kinds: dict[str, str] = dataclasses.field(default_factory=dict)  # variant id -> the edit made
    distinct: list[str] = dataclasses.field(default_factory=list)


def web_documents(shared_data: Path) -> list[dict]:
    with gzip.open(shared_data / CC_JSONL, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def doc(source: str, text: str, url: str | None, origin: str, when: datetime | None = None, **extra) -> dict:
    return documents.make_document(source=source, text=text, url=url, lang="en", lang_score=0.9,
                                   origin_file=origin, crawl_time=when, **extra)


def write_shards(folder: Path, rows: list[dict], per_shard: int = 200) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(0, len(rows), per_shard):
        path = folder / f"part-{i // per_shard:04d}.parquet"
        with runtime.ShardWriter(path) as writer:
            writer.write_table(schema.to_table(rows[i:i + per_shard]))
        paths.append(path)
    return paths


def _edits(text: str, rng: random.Random) -> dict[str, str]:
    """Copies of `text` with known small edits; the page with navigation and boilerplate around it, and copies of
    that page with the boilerplate reordered."""
    paras = [p for p in text.split("\n") if p.strip()]
    words = len(text.split())
    small = [i for i, p in enumerate(paras) if 0 < len(p.split()) <= 0.12 * words]
    drop = small[len(small) // 2] if small else len(paras) - 1
    shuffled = NAV[:]
    rng.shuffle(shuffled)
    framed = "\n".join(NAV) + "\n" + text + "\n" + BOILERPLATE
    return {
        "exact copy": text,
        "banner": f"Breaking: site maintenance tonight, posted {rng.randint(1, 28)} March by the webmaster\n{text}",
        "date line": f"Last updated on {rng.choice(['Monday', 'Friday'])}, June {rng.randint(1, 28)}, 2019\n{text}",
        "dropped paragraph": "\n".join(paras[:drop] + paras[drop + 1:]),
        "framed": framed,
        "reordered boilerplate": BOILERPLATE + "\n" + text + "\n" + "\n".join(shuffled),
        "framed banner": f"Breaking: site maintenance tonight\n{framed}",
    }


def planted_corpus(shared_data: Path, seed: int = 7) -> tuple[list[dict], Planted]:
    """The real web documents as `commoncrawl`, plus planted duplicate groups (some copies as `webtext2`) and
    distinct documents that share a long boilerplate block."""
    rng = random.Random(seed)
    web = [d for d in web_documents(shared_data) if len(d["text"].split()) >= 150]
    t0 = datetime(2019, 7, 17, tzinfo=timezone.utc)
    rows = [doc("commoncrawl", d["text"], f"https://site{i}.example.org/page/{i}", "cc.jsonl.gz", t0)
            for i, d in enumerate(web)]
    truth = Planted()
    originals = rng.sample(range(len(web)), 40)
    for n, i in enumerate(originals):
        variants = _edits(web[i]["text"], rng)
        if n % 2:
            picks = ["exact copy", "banner", "date line", "dropped paragraph"]
        else:  # the original is the framed page; its copies move the boilerplate around
            rows[i] = doc("commoncrawl", variants["framed"], rows[i]["url"], "cc.jsonl.gz", t0)
            picks = ["reordered boilerplate", "framed banner"]
        group = [rows[i]["id"]]
        for k, what in enumerate(picks):
            source = "webtext2" if k == 0 and n % 4 == 1 else "commoncrawl"
            row = doc(source, variants[what], f"https://mirror{k}.example.net/{n}", f"{source}.jsonl.gz",
                      t0 + timedelta(days=k + 1))
            rows.append(row)
            group.append(row["id"])
            truth.kinds[row["id"]] = what
        truth.groups.append(group)
    # distinct documents that share a long block of boilerplate: similar-looking, not duplicates
    others = [i for i in range(len(web)) if i not in originals and 150 <= len(web[i]["text"].split()) <= 400][:30]
    for j, i in enumerate(others):
        row = doc("commoncrawl", BOILERPLATE + "\n" + web[i]["text"] + "\n" + BOILERPLATE,
                  f"https://boiler.example.com/{j}", "boiler.jsonl.gz", t0)
        rows.append(row)
        truth.distinct.append(row["id"])
    rng.shuffle(rows)
    return rows, truth
