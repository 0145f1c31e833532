"""WARC fixtures for the CommonCrawl tests: real pages written for the purpose (readable text in several languages,
wrapped in navigation and cookie boilerplate), written into WARC files with warcio (plain, gzip, or zstd as the IIPC
WARC-zstd format has it), and ways to damage those files."""

from __future__ import annotations

import dataclasses
import gzip
import io
import random
import struct
import uuid
from pathlib import Path

import zstandard
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

# Each article: (title, paragraphs). Long enough for trafilatura to take it as main text and lid.176 to be sure.
ARTICLES: dict[str, tuple[str, list[str]]] = {
    "en": ("How the river town rebuilt its old bridge", [
        "For almost a century the stone bridge over the river was the only way across for farmers bringing their "
        "harvest to the market on the other bank, and when the flood of last spring cracked two of its arches the "
        "town council had to decide quickly whether to repair it or to build a new one.",
        "The engineers who inspected the structure found that the foundations were still sound. Most of the damage "
        "had been done by tree trunks carried by the water, which struck the piers again and again during the night.",
        "In the end the council chose to restore the bridge with the original stones wherever possible. Local "
        "masons worked through the summer, and the bridge reopened in October with a small celebration on the square.",
    ]),
    "de": ("Wie das Dorf seine alte Mühle wieder in Gang brachte", [
        "Jahrzehntelang stand die Wassermühle am Bach still, und viele Bewohner hatten vergessen, dass hier früher "
        "das Mehl für die ganze Gegend gemahlen wurde. Erst als ein Verein junger Handwerker sich der Sache annahm, "
        "begann man wieder über das alte Gebäude zu sprechen.",
        "Die Arbeit war mühsam: Das Mühlrad musste vollständig erneuert werden, und für die Zahnräder aus Eichenholz "
        "gab es keine Pläne mehr. Ein pensionierter Zimmermann erinnerte sich jedoch an die Maße und half bei jedem "
        "Schritt.",
        "Seit dem vergangenen Herbst dreht sich das Rad wieder. An jedem ersten Sonntag im Monat können Besucher "
        "zusehen, wie Getreide gemahlen wird, und im kleinen Laden nebenan frisches Brot kaufen.",
    ]),
    "fr": ("Le petit marché du samedi retrouve ses habitués", [
        "Après deux années difficiles, le marché du samedi matin a enfin retrouvé son animation d'autrefois. Dès sept "
        "heures, les maraîchers installent leurs étals sous les platanes de la place et les premiers clients arrivent "
        "avec leurs paniers.",
        "On y trouve des légumes cultivés à quelques kilomètres, des fromages de chèvre, du miel et des fleurs "
        "coupées. Les commerçants disent que les gens préfèrent de nouveau acheter directement aux producteurs.",
        "La mairie a décidé d'agrandir le marché au printemps prochain afin d'accueillir une dizaine de nouveaux "
        "exposants, dont plusieurs jeunes agriculteurs qui viennent de s'installer dans la région.",
    ]),
    "ru": ("Как в небольшом городе открыли новую библиотеку", [
        "Долгое время жители города жаловались, что старая библиотека слишком мала и в ней почти нет новых книг. "
        "Весной городской совет наконец решил отдать под библиотеку просторное здание бывшей школы.",
        "Ремонт продолжался всё лето. Рабочие заменили окна и крышу, а добровольцы помогали разбирать и расставлять "
        "книги, которые жители приносили в подарок.",
        "Теперь в библиотеке есть читальный зал, детская комната и небольшой лекторий, где по вечерам проходят "
        "встречи с писателями и занятия для школьников.",
    ]),
    "zh": ("小城的老茶馆重新开张了", [
        "这家老茶馆在河边已经开了五十多年，是许多老人每天早上见面聊天的地方。去年因为房子太旧，茶馆不得不暂时关门。",
        "经过几个月的修缮，茶馆保留了原来的木桌和竹椅，又在后院种了几棵桂花树。老板说，他希望年轻人也愿意来这里坐一坐。",
        "重新开张那天，很多街坊邻居都来了。大家一边喝茶，一边听老师傅讲过去的故事，热闹得就像过节一样。",
    ]),
    "nl": ("Hoe de buurt een eigen moestuin kreeg", [
        "Op een braakliggend stuk grond achter het station ligt sinds dit voorjaar een moestuin die door de bewoners "
        "van de buurt zelf wordt onderhouden. Iedereen die wil meehelpen, krijgt een klein stukje grond.",
        "In de eerste maanden werden er bonen, sla, tomaten en pompoenen geplant. De oogst wordt eerlijk verdeeld, en "
        "wat overblijft gaat naar de voedselbank in het dorp.",
        "Volgens de initiatiefnemers is de tuin vooral een plek geworden waar buren elkaar leren kennen en samen iets "
        "opbouwen.",
    ]),
    "es": ("El pueblo que recuperó su antigua fiesta de la cosecha", [
        "Durante muchos años la fiesta de la cosecha había desaparecido del calendario del pueblo. Este otoño, un "
        "grupo de vecinos decidió organizarla de nuevo con la ayuda del ayuntamiento.",
        "Hubo música en la plaza, un concurso de pan casero y una comida popular en la que participaron más de "
        "trescientas personas, muchas de ellas llegadas de los pueblos cercanos.",
        "Los organizadores esperan que la fiesta vuelva a celebrarse cada año y que los jóvenes se animen a "
        "colaborar en su preparación.",
    ]),
}

BOILERPLATE_NAV = ('<nav class="menu"><ul><li><a href="/">Home</a></li><li><a href="/news">News</a></li>'
                   '<li><a href="/about">About us</a></li><li><a href="/contact">Contact</a></li></ul></nav>')
BOILERPLATE_COOKIES = ('<div id="cookie-banner">We use cookies to improve your experience on our website. By '
                       'continuing to browse you accept our cookie policy. <button>Accept all cookies</button></div>')
BOILERPLATE_FOOTER = '<footer><p>Copyright 2024 Example Media. All rights reserved. Imprint. Privacy.</p></footer>'


def article_html(lang: str, meta_charset: str | None = "utf-8", extra_paragraphs: int = 0) -> str:
    """A full page: the article of `lang` between navigation, cookie banner and footer."""
    title, paragraphs = ARTICLES[lang]
    paragraphs = paragraphs + paragraphs[:1] * extra_paragraphs
    meta = f'<meta charset="{meta_charset}">' if meta_charset else ""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f'<!DOCTYPE html><html lang="{lang}"><head>{meta}<title>{title}</title></head><body>'
            f'{BOILERPLATE_NAV}{BOILERPLATE_COOKIES}<main><article><h1>{title}</h1>{body}</article></main>'
            f'{BOILERPLATE_FOOTER}</body></html>')


def slow_html(paragraphs: int = 20_000) -> str:
    """A genuinely slow page for trafilatura: ~2 MB of small nested blocks (seconds to extract, not milliseconds)."""
    body = "".join(f"<div class='c{i % 7}'><p>Paragraph {i} of a very long page with some words in it and a "
                   f"<a href='/x{i}'>link</a>.</p></div>" for i in range(paragraphs))
    return f"<html><head><title>Slow page</title></head><body>{body}</body></html>"


@dataclasses.dataclass
class Rec:
    """One record to write: a response (status, headers, body), or another WARC type with a raw block."""

    url: str
    body: bytes = b""
    content_type: str | None = "text/html; charset=utf-8"
    status: str = "200 OK"
    rec_type: str = "response"
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def record_id(self) -> str:
        return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, self.rec_type + ':' + self.url)}>"


def page(url: str, lang: str, charset: str = "utf-8", http_charset: str | None = "utf-8",
         meta_charset: str | None = "utf-8", **kw) -> Rec:
    """A response record holding the article of `lang` encoded in `charset`."""
    ctype = "text/html" + (f"; charset={http_charset}" if http_charset else "")
    return Rec(url, article_html(lang, meta_charset).encode(charset), content_type=ctype, **kw)


LANGS = ["en", "de", "fr", "ru", "zh"]


def pages(prefix: str = "http://example.org", langs=LANGS) -> list[Rec]:
    """One article page per language, under `prefix`."""
    return [page(f"{prefix}/{lang}", lang) for lang in langs]


def warc_bytes(records: list[Rec], compress: bool = True) -> tuple[bytes, list[int]]:
    """`records` as the bytes of a WARC file (one gzip member each when `compress`), and each record's offset."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=compress)
    offsets = []
    for i, rec in enumerate(records):
        offsets.append(buf.tell())
        warc_headers = {"WARC-Date": f"2024-05-{1 + i % 28:02d}T12:00:00Z", "WARC-Record-ID": rec.record_id}
        if rec.rec_type in ("response", "revisit", "request"):
            headers = list(rec.headers)
            if rec.content_type is not None and rec.rec_type == "response":
                headers.insert(0, ("Content-Type", rec.content_type))
            if rec.rec_type == "request":
                http = StatusAndHeaders(f"GET {rec.url} HTTP/1.1", [("Host", "example.org")], is_http_request=True)
            else:
                http = StatusAndHeaders(rec.status, headers + [("Content-Length", str(len(rec.body)))],
                                        protocol="HTTP/1.1")
            if rec.rec_type == "revisit":
                warc_headers["WARC-Profile"] = "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest"
            record = writer.create_warc_record(rec.url, rec.rec_type, payload=io.BytesIO(rec.body),
                                               length=len(rec.body), warc_headers_dict=warc_headers,
                                               http_headers=http)
        else:
            record = writer.create_warc_record(rec.url, rec.rec_type, payload=io.BytesIO(rec.body),
                                               length=len(rec.body), warc_content_type="text/plain",
                                               warc_headers_dict=warc_headers)
        writer.write_record(record)
    return buf.getvalue(), offsets


def write_warc(path: Path, records: list[Rec], compress: bool = True) -> list[int]:
    """Write `records` (one gzip member each when `compress`) and return each record's byte offset."""
    data, offsets = warc_bytes(records, compress)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return offsets


def record_bytes(records: list[Rec]) -> list[bytes]:
    """Each record as uncompressed WARC bytes, its two trailing CRLFs included."""
    data, offsets = warc_bytes(records, compress=False)
    return [data[a:b] for a, b in zip(offsets, offsets[1:] + [len(data)])]


def train_dictionary(records: list[Rec], dict_id: int = 40_000) -> zstandard.ZstdCompressionDict:
    """A zstd dictionary trained on `records`, with the ID a WARC-zstd writer gives it."""
    return zstandard.train_dictionary(4096, record_bytes(records), dict_id=dict_id)


def skippable_frame(magic: int, data: bytes) -> bytes:
    """A zstd skippable frame (RFC 8878 3.1.2): magic, little-endian size, data."""
    return struct.pack("<II", magic, len(data)) + data


def write_warc_zst(path: Path, records: list[Rec], dictionary: zstandard.ZstdCompressionDict | None = None,
                   compress_dictionary: bool = False, extension_after: int | None = None) -> list[int]:
    """Write `records` as the IIPC WARC-zstd format does: one zstd frame per record (with content size and checksum),
    after a dictionary frame (skippable frame 0x184D2A5D) holding `dictionary`, itself zstd-compressed when
    `compress_dictionary`, if one is given; an extension frame (another skippable frame) after record
    `extension_after`. Returns each record's frame offset."""
    out = b""
    if dictionary is not None:
        data = dictionary.as_bytes()
        if compress_dictionary:
            data = zstandard.ZstdCompressor(write_checksum=True).compress(data)
        out = skippable_frame(0x184D2A5D, data)
    compressor = zstandard.ZstdCompressor(level=9, dict_data=dictionary, write_checksum=True)
    offsets = []
    for i, record in enumerate(record_bytes(records)):
        offsets.append(len(out))
        out += compressor.compress(record)
        if i == extension_after:
            out += skippable_frame(0x184D2A50, b"an extension frame readers skip")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out)
    return offsets




def gzip_whole(src: Path, dst: Path) -> None:
    """Compress an uncompressed WARC as ONE gzip member (non-chunked gzip, as `gzip file.warc` makes)."""
    dst.write_bytes(gzip.compress(src.read_bytes(), mtime=0))


def corrupt(path: Path, offset: int, length: int = 64) -> None:
    """Overwrite `length` bytes at `offset` with garbage (in place)."""
    data = bytearray(path.read_bytes())
    data[offset:offset + length] = bytes((b * 37 + 11) % 256 for b in range(length))
    path.write_bytes(bytes(data))


def make_inputs(folder: Path) -> tuple[list[Path], dict[str, list[int]]]:
    """Two good files, one with a corrupt record (its 2nd), one cut inside its 2nd record and one garbage file; the
    files and each file's record offsets."""
    good1, good2 = folder / "good-1.warc.gz", folder / "good-2.warc.gz"
    offsets = {str(good1): write_warc(good1, pages("http://one.example")),
               str(good2): write_warc(good2, pages("http://two.example", ["nl", "en"]))}
    damaged = folder / "damaged.warc.gz"
    offsets[str(damaged)] = write_warc(damaged, pages("http://three.example", ["de", "fr", "ru"]))
    corrupt(damaged, offsets[str(damaged)][1] + 100)
    cut = folder / "cut.warc.gz"
    cut_offsets = write_warc(cut, pages("http://four.example", ["zh", "en"]))
    cut.write_bytes(cut.read_bytes()[: cut_offsets[1] + 40])
    offsets[str(cut)] = cut_offsets
    garbage = folder / "garbage.warc.gz"
    garbage.write_bytes(random.Random(3).randbytes(5000))
    return [good1, good2, damaged, cut, garbage], offsets
