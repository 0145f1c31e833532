"""Document shards for the dedup tests: real web text (697 CommonCrawl documents from dolma's test data), real
Chinese and Japanese pages (news, an encyclopedia article, a blog, song lyrics with their pinyin) and Gutenberg's
Persuasion twin (105/106), with planted duplicates whose edits and true similarity are known."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import random
import re
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


def doc(source: str, text: str, url: str | None, origin: str, when: datetime | None = None, lang: str = "en",
        **extra) -> dict:
    return documents.make_document(source=source, text=text, url=url, lang=lang, lang_score=0.9,
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


# Real pages in scripts written without spaces, under extraction/: name -> (language, page)
CJK_PAGES = {
    "xinhuanet": ("zh", "trafilatura-eval/eval/xinhuanet.com.c_1125597921.html.gz"),  # Wuhan lockdown, 2020
    "banyuetan": ("zh", "trafilatura-eval/eval/banyuetan.org.1000200033136171577956287380194268_1.html.gz"),
    "he.xinhuanet": ("zh", "trafilatura-eval/eval/archive.org.he.xinhuanet.com.25340717.html.gz"),  # a play, 2012
    "baike": ("zh", "trafilatura-eval/eval/baike.baidu.com.tanya.html.gz"),  # a singer's biography, 9,500 characters
    "lyrics": ("zh", "trafilatura-eval/cache/chineselyrics4u.com.zhineng.html.gz"),  # each line, then its pinyin
    "nhk": ("ja", "trafilatura-eval/eval/nhk.or.jp.k100.html.gz"),  # NHK News Web Easy
    "yahoo": ("ja", "mozilla-readability-test-pages/pages/yahoo-4/source.html.gz"),  # kana, kanji, Latin names
    "pixnet": ("zh", "mozilla-readability-test-pages/pages/pixnet/source.html.gz"),  # traditional characters
}
CJK_BOILERPLATE = (  # a Chinese site footer: shared by distinct pages, not a reason to merge them
    "版权所有 未经授权禁止复制或建立镜像 本网站所刊登的各种新闻、信息和各种专题专栏资料均为本网站版权所有 "
    "联系我们 关于我们 广告服务 网站地图 隐私政策 意见反馈 举报中心 友情链接 招聘信息 客户服务热线 "
    "违法和不良信息举报电话 互联网新闻信息服务许可证 网络文化经营许可证 增值电信业务经营许可证 公安机关备案号")
_TYPO_CHARS = {"zh": "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种",
               "ja": "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"}
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
_HALF_WIDTH = str.maketrans("，。！？：；（）、「」《》", ",.!?:;()/\"\"<>")


@functools.cache
def cjk_documents(shared_data: Path) -> dict[str, tuple[str, str]]:
    """name -> (language, main text) of `CJK_PAGES`, extracted with trafilatura as the commoncrawl stage does."""
    from corpusforge.extract import ExtractOptions, decode_html, extract_in_process

    out = {}
    for name, (lang, page) in CJK_PAGES.items():
        html, _ = decode_html(gzip.decompress((shared_data / "extraction" / page).read_bytes()))
        out[name] = (lang, extract_in_process(html, None, ExtractOptions())[1])
    return out


def cjk_edits(text: str, lang: str, rng: random.Random) -> dict[str, str]:
    """Copies of a Chinese or Japanese text with the edits copies get on the web: a few characters changed (1%),
    a sentence inserted, a source line on top, ASCII punctuation for full-width, a short paragraph dropped (when
    the text has one)."""
    chars = list(text)
    where = [i for i, c in enumerate(chars) if _CJK_CHAR.match(c)]
    for i in rng.sample(where, max(1, len(where) // 100)):
        chars[i] = rng.choice(_TYPO_CHARS[lang])
    paras = text.split("\n")
    middle = len(paras) // 2
    inserted = "（本报记者 王晓明 报道）" if lang == "zh" else "（この記事は一部を修正しました）"
    source = "来源：新华网 2020年02月19日 责任编辑：李明" if lang == "zh" else "出典：共同通信 2020年2月19日"
    copies = {
        "changed characters": "".join(chars),
        "inserted sentence": "\n".join(paras[:middle] + [paras[middle] + inserted] + paras[middle + 1:]),
        "source line": f"{source}\n{text}",
        "half-width punctuation": text.translate(_HALF_WIDTH),
    }
    small = [i for i, p in enumerate(paras) if 0 < len(p) <= 0.1 * len(text)]
    if small:  # a short text's paragraph is no small edit (NHK's shortest is 17% of it)
        drop = small[len(small) // 2]
        copies["dropped paragraph"] = "\n".join(paras[:drop] + paras[drop + 1:])
    return copies


def cjk_corpus(shared_data: Path, seed: int = 11) -> tuple[list[dict], Planted]:
    """The Chinese and Japanese pages with their `cjk_edits` copies (one copy labelled with a wrong language), the
    baike article cut into six sections (one topic, distinct texts; three framed by `CJK_BOILERPLATE`), and real
    English web pages with copies of their own: a mixed corpus."""
    rng = random.Random(seed)
    t0 = datetime(2020, 2, 19, tzinfo=timezone.utc)
    rows, truth = [], Planted()
    for n, (name, (lang, text)) in enumerate(cjk_documents(shared_data).items()):
        original = doc("commoncrawl", text, f"https://{name}.example.cn/article", "cjk.warc.gz", t0, lang=lang)
        rows.append(original)
        group = [original["id"]]
        for k, (what, copy) in enumerate(cjk_edits(text, lang, rng).items()):
            label = "en" if what == "source line" else lang  # lid is no part of the choice of shingles
            row = doc("commoncrawl", copy, f"https://mirror{k}.example.cn/{n}", "cjk.warc.gz", t0, lang=label)
            rows.append(row)
            group.append(row["id"])
            truth.kinds[row["id"]] = what
        truth.groups.append(group)
    paras = [p for p in cjk_documents(shared_data)["baike"][1].split("\n") if p.strip()]
    bounds = [round(i * len(paras) / 6) for i in range(7)]
    for j in range(6):
        section = "\n".join(paras[bounds[j]:bounds[j + 1]])
        text = f"{CJK_BOILERPLATE}\n{section}\n{CJK_BOILERPLATE}" if j >= 3 else section
        row = doc("commoncrawl", text, f"https://baike.example.cn/section/{j}", "cjk.warc.gz", t0, lang="zh")
        rows.append(row)
        truth.distinct.append(row["id"])
    titles = {}  # the crawl's own near copies (two pages of one ballad site) share their first line: one of each
    for d in web_documents(shared_data):
        if len(d["text"].split()) >= 150:
            titles.setdefault(d["text"].split("\n")[0], d["text"])
    web = list(titles.values())[:40]
    for n, text in enumerate(web):
        rows.append(doc("commoncrawl", text, f"https://en{n}.example.org/", "cc.jsonl.gz", t0))
        if n < 10:
            group, variants = [rows[-1]["id"]], _edits(text, rng)
            for k, what in enumerate(("exact copy", "banner", "dropped paragraph")):
                rows.append(doc("commoncrawl", variants[what], f"https://m{k}.example.org/{n}", "cc.jsonl.gz", t0))
                group.append(rows[-1]["id"])
                truth.kinds[rows[-1]["id"]] = what
            truth.groups.append(group)
    rng.shuffle(rows)
    return rows, truth
