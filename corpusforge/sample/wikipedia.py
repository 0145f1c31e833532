"""Sample part `wikipedia`: two small MediaWiki XML dumps in the real export format, written by the project.

`enwiki-20240101-pages-articles-multistream.xml.bz2` (with its `-index.txt.bz2`, a few pages per bz2 stream, as
Wikimedia publishes it) and `dewiki-20240101-pages-articles.xml.bz2` (one bz2 stream). The articles are short texts
written for corpusforge, with the markup real articles carry: infobox and nested templates, references, tables,
images with captions (`thumb`, `miniatur`, `Bild:`), galleries, categories, interlanguage links and apparatus
sections; plus a redirect, a disambiguation page and pages outside the article namespace, which the stage skips.

`write_dump` is also what the tests use to build damaged and split dumps.
"""

from __future__ import annotations

import bz2
import hashlib
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

EN_NAMESPACES = {-2: "Media", -1: "Special", 0: "", 1: "Talk", 2: "User", 3: "User talk", 4: "Wikipedia",
                 5: "Wikipedia talk", 6: "File", 7: "File talk", 8: "MediaWiki", 9: "MediaWiki talk",
                 10: "Template", 11: "Template talk", 12: "Help", 13: "Help talk", 14: "Category",
                 15: "Category talk", 100: "Portal", 101: "Portal talk"}
DE_NAMESPACES = {-2: "Medium", -1: "Spezial", 0: "", 1: "Diskussion", 2: "Benutzer", 3: "Benutzer Diskussion",
                 4: "Wikipedia", 5: "Wikipedia Diskussion", 6: "Datei", 7: "Datei Diskussion", 8: "MediaWiki",
                 9: "MediaWiki Diskussion", 10: "Vorlage", 11: "Vorlage Diskussion", 12: "Hilfe",
                 13: "Hilfe Diskussion", 14: "Kategorie", 15: "Kategorie Diskussion", 100: "Portal",
                 101: "Portal Diskussion"}


def _sha1_base36(text: str) -> str:
    """The `<sha1>` MediaWiki writes: the SHA-1 of the text in base 36, 31 digits."""
    n = int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16)
    digits = ""
    while n:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
    return digits.rjust(31, "0")


def header_xml(*, lang: str, dbname: str, sitename: str, base: str, namespaces: dict[int, str]) -> str:
    """`<mediawiki>` and `<siteinfo>`, as in a dump of export schema 0.11."""
    ns_lines = "".join(
        f'      <namespace key="{key}" case="first-letter" />\n' if not name else
        f'      <namespace key="{key}" case="first-letter">{escape(name)}</namespace>\n'
        for key, name in sorted(namespaces.items()))
    return (f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:schemaLocation="http://www.mediawiki.org/xml/export-0.11/ '
            f'http://www.mediawiki.org/xml/export-0.11.xsd" version="0.11" xml:lang="{lang}">\n'
            f"  <siteinfo>\n    <sitename>{escape(sitename)}</sitename>\n    <dbname>{dbname}</dbname>\n"
            f"    <base>{escape(base)}</base>\n    <generator>MediaWiki 1.42.0-wmf.10</generator>\n"
            f"    <case>first-letter</case>\n    <namespaces>\n{ns_lines}    </namespaces>\n  </siteinfo>\n")


def page_xml(page: dict) -> str:
    """One `<page>` element. `page`: title, ns, id, rev, timestamp, text, and optionally redirect (target title)."""
    text = page["text"]
    redirect = f"    <redirect title={quoteattr(page['redirect'])} />\n" if page.get("redirect") else ""
    return (f"  <page>\n    <title>{escape(page['title'])}</title>\n    <ns>{page['ns']}</ns>\n"
            f"    <id>{page['id']}</id>\n{redirect}    <revision>\n      <id>{page['rev']}</id>\n"
            f"      <parentid>{page['rev'] - 1}</parentid>\n      <timestamp>{page['timestamp']}</timestamp>\n"
            f"      <contributor>\n        <username>{escape(page.get('user', 'Corpusforge'))}</username>\n"
            f"        <id>{page.get('user_id', 42)}</id>\n      </contributor>\n"
            f"      <comment>{escape(page.get('comment', 'sample revision'))}</comment>\n"
            f"      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f'      <text bytes="{len(text.encode("utf-8"))}" xml:space="preserve">{escape(text)}</text>\n'
            f"      <sha1>{_sha1_base36(text)}</sha1>\n    </revision>\n  </page>\n")


def write_dump(path: str | Path, pages: list[dict], *, lang: str, dbname: str, sitename: str, base: str,
               namespaces: dict[int, str], multistream: bool = False, pages_per_stream: int = 100,
               compresslevel: int = 9, page_text=page_xml) -> dict:
    """Write a dump: plain XML (`.xml`), one bz2 stream (`.bz2`), or multistream bz2 with its index beside it
    (`NAME-index.txt.bz2`, lines `offset:page_id:title`, as Wikimedia publishes them). `page_text` renders a page
    (tests pass one that damages a page). Returns what was written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = header_xml(lang=lang, dbname=dbname, sitename=sitename, base=base, namespaces=namespaces)
    foot = "</mediawiki>\n"
    if not path.name.endswith(".bz2"):
        path.write_text(head + "".join(page_text(p) for p in pages) + foot, encoding="utf-8")
        return {"dump": str(path), "pages": len(pages)}
    if not multistream:
        data = (head + "".join(page_text(p) for p in pages) + foot).encode("utf-8")
        path.write_bytes(bz2.compress(data, compresslevel))
        return {"dump": str(path), "pages": len(pages)}
    index_lines = []
    with open(path, "wb") as fh:
        fh.write(bz2.compress(head.encode("utf-8"), compresslevel))
        for i in range(0, len(pages), pages_per_stream):
            group = pages[i:i + pages_per_stream]
            offset = fh.tell()
            index_lines += [f"{offset}:{p['id']}:{p['title']}\n" for p in group]
            fh.write(bz2.compress("".join(page_text(p) for p in group).encode("utf-8"), compresslevel))
        fh.write(bz2.compress(foot.encode("utf-8"), compresslevel))
    index = path.with_name(path.name[: -len(".xml.bz2")] + "-index.txt.bz2")
    index.write_bytes(bz2.compress("".join(index_lines).encode("utf-8"), compresslevel))
    return {"dump": str(path), "index": str(index), "pages": len(pages)}


# --------------------------------------------------------------------------------------------------- the articles
_EN = [
    {"title": "River", "ns": 0, "id": 101, "rev": 9001, "timestamp": "2023-11-02T08:14:55Z", "text": """\
{{Short description|Natural flowing watercourse}}
{{Infobox landform
| name = River
| image = {{Photo|River bend.jpg|size={{px|220}}}}
| type = Watercourse
}}
[[File:River bend in autumn.jpg|thumb|220px|A slow river bend in autumn, photographed from a footbridge]]
A '''river''' is a natural stream of [[fresh water]] that flows toward an [[ocean]], a [[lake]] or another river.<ref>{{cite book |title=Rivers and Their Valleys |year=1998 |publisher=Example Press}}</ref> Rivers gather the rain that falls on their [[drainage basin|basin]] and carry it, together with sand and silt, downhill along a channel they have cut over thousands of years.

Small rivers are often called streams, brooks or creeks; there is no fixed size at which a stream becomes a river.<ref name="names">Local usage differs from one region to the next.</ref>

== Course ==
A river begins at a [[source (river)|source]], which may be a spring, a melting glacier or a marshy upland. In its upper course the water is fast and the valley narrow. Further down, the slope eases, the channel widens and the river begins to [[meander]] across a flat floodplain.<ref name="names"/>

=== Mouth ===
Where a river meets the sea it may form a [[river delta|delta]] of new land built from the sediment it drops, or an [[estuary]] in which fresh and salt water mix with the tides.

== Uses ==
People have settled beside rivers since the first farms, because rivers provide water for drinking and for fields, fish for food, and an easy road for boats.
* Irrigation of crops in dry seasons
* Transport of goods by barge
* Power for mills and, later, for turbines

{| class="wikitable"
|+ Longest rivers
! River !! Length (km)
|-
| Nile || 6650
|-
| Amazon || 6400
|}

== See also ==
* [[Stream]]
* [[Waterfall]]

== References ==
{{Reflist}}

== External links ==
* [https://example.org/rivers Rivers of the world]

{{Hydrology navbox}}
[[Category:Rivers| ]]
[[Category:Bodies of water]]
[[de:Fluss]]
[[fr:Rivière]]
"""},
    {"title": "Rivers", "ns": 0, "id": 102, "rev": 9002, "timestamp": "2021-05-17T12:00:00Z", "redirect": "River",
     "text": "#REDIRECT [[River]]\n\n{{R from plural}}\n"},
    {"title": "Lighthouse", "ns": 0, "id": 103, "rev": 9003, "timestamp": "2023-07-21T19:45:10Z", "text": """\
{{Use dmy dates|date=July 2023}}
[[Image:Lighthouse at dusk.png|thumb|upright=1.2|left|A lighthouse at dusk with its lamp lit]]
A '''lighthouse''' is a tower built to guide ships at night with a strong light at its top. It marks dangerous coasts, reefs and the entrances to harbours, so that sailors can find their way and keep clear of the rocks.

== History ==
The earliest lighthouses were open fires kept burning on hilltops. The most famous was the [[Lighthouse of Alexandria|Pharos]] of Alexandria, which stood for well over a thousand years.{{sfn|Smith|2001|p=12}} Later towers burned candles, then oil lamps, and from the nineteenth century used large glass lenses that gather the light into a narrow beam visible for many miles.

== Keepers ==
For most of their history lighthouses needed a keeper, who trimmed the wick, wound the clockwork that turned the lens and kept the glass clean of salt. The work was lonely, and keepers often lived with their families in a cottage at the foot of the tower. Today almost every light is automatic.

<gallery>
File:Lighthouse lens.jpg|A lens of the nineteenth century
File:Keeper cottage.jpg|A keeper's cottage
</gallery>

== Notes ==
{{notelist}}

[[Category:Lighthouses]]
[[es:Faro]]
"""},
    {"title": "Mercury", "ns": 0, "id": 104, "rev": 9004, "timestamp": "2022-02-02T02:02:02Z", "text": """\
'''Mercury''' may refer to:
* [[Mercury (planet)]], the planet nearest the Sun
* [[Mercury (element)]], a chemical element
* [[Mercury (mythology)]], a Roman god

{{disambiguation}}
"""},
    {"title": "Sourdough", "ns": 0, "id": 105, "rev": 9005, "timestamp": "2024-01-01T10:30:00Z", "text": """\
{{Infobox food
| name = Sourdough
| type = [[Bread]]
| main_ingredient = Flour, water
}}
'''Sourdough''' is [[bread]] made from a dough raised by a culture of wild [[yeast]] and lactic acid bacteria rather than by baker's yeast bought in a packet.<ref>{{cite web |url=https://example.org/bread |title=Bread basics}}</ref> The bacteria give the bread its slightly sour taste and help it keep fresh for longer.

== Starter ==
The culture, called a starter, is a simple mixture of flour and water left at room temperature. Over a few days yeasts and bacteria from the flour and the air begin to grow in it, and it starts to bubble and smell pleasantly sharp. A baker keeps the starter alive by "feeding" it with fresh flour and water every day, and adds a portion of it to each new batch of dough.

== Baking ==
Because wild yeast works more slowly than baker's yeast, a sourdough loaf may need many hours to rise. Bakers often leave the shaped dough overnight in a cool place. The long rise lets the flavour develop and gives the crumb its open, irregular holes.

{| class="wikitable"
! Step !! Time
|-
| Feeding the starter || 12 hours
|-
| Rising || 8 hours
|}

[[Category:Breads]]
"""},
    {"title": "Talk:Sourdough", "ns": 1, "id": 106, "rev": 9006, "timestamp": "2024-01-02T11:00:00Z", "text": """\
== Merge proposal ==
Should the section on starters move to its own article? ~~~~
"""},
    {"title": "Category:Breads", "ns": 14, "id": 107, "rev": 9007, "timestamp": "2020-03-03T03:03:03Z",
     "text": "Articles about breads of all kinds.\n[[Category:Foods]]\n"},
    {"title": "Tide", "ns": 0, "id": 108, "rev": 9008, "timestamp": "2023-09-09T09:09:09Z", "text": """\
{{about|the rise and fall of the sea|other uses|Tide (disambiguation)}}
'''Tides''' are the regular rise and fall of the sea, caused by the pull of the [[Moon]] and, to a lesser degree, of the [[Sun]] on the [[Earth]]'s oceans.<ref>{{cite book |title=The Sea Around Us}}</ref> Most coasts see two high tides and two low tides each day, about twelve and a half hours apart.

== Spring and neap tides ==
When the Sun and the Moon line up, at new moon and full moon, their pulls add together and the tides are especially high and low; these are called spring tides. When they pull at right angles, at the quarter moons, the difference between high and low water is smallest; these are neap tides.

== Tidal range ==
The height between high and low water varies greatly from place to place. In the open ocean it is small, but in a narrowing bay the water can pile up to a range of more than ten metres.
"""},
]

_DE = [
    {"title": "Fluss", "ns": 0, "id": 201, "rev": 7001, "timestamp": "2023-10-10T10:10:10Z", "text": """\
{{Begriffsklärungshinweis}}
[[Datei:Flusslandschaft.jpg|miniatur|hochkant=1.3|Ein Fluss windet sich durch eine Auenlandschaft]]
Ein '''Fluss''' ist ein größeres [[Fließgewässer]], das sein Wasser aus Quellen, Regen und [[Nebenfluss|Nebenflüssen]] sammelt und einem Meer, einem See oder einem anderen Fluss zuführt.<ref>{{Literatur |Titel=Gewässerkunde |Jahr=2005}}</ref> Kleinere Fließgewässer nennt man Bach; eine feste Grenze zwischen Bach und Fluss gibt es nicht.

== Verlauf ==
Am Oberlauf fließt das Wasser schnell und gräbt sich ein enges Tal. Im Mittellauf wird das Gefälle geringer, und im Unterlauf bildet der Fluss oft weite [[Mäander]] in einer flachen Aue. An der Mündung lagert er Sand und Schlamm ab und baut so ein [[Flussdelta|Delta]] auf.

== Nutzung ==
Flüsse dienen seit jeher als Verkehrswege, als Wasserquelle für Felder und Städte und zur Gewinnung von Energie. Viele große Städte sind an Flüssen entstanden, weil dort Handel und Fischfang möglich waren.

== Einzelnachweise ==
<references />

== Weblinks ==
* [https://example.org/fluss Flüsse in Europa]

[[Kategorie:Fließgewässer]]
[[en:River]]
"""},
    {"title": "Flüsse", "ns": 0, "id": 202, "rev": 7002, "timestamp": "2019-01-01T00:00:00Z",
     "redirect": "Fluss", "text": "#WEITERLEITUNG [[Fluss]]\n"},
    {"title": "Leuchtturm", "ns": 0, "id": 203, "rev": 7003, "timestamp": "2022-06-15T15:15:15Z", "text": """\
[[Bild:Leuchtturm an der Küste.jpg|mini|links|Ein rot-weißer Leuchtturm an der Nordseeküste]]
Ein '''Leuchtturm''' ist ein Turm mit einem starken Licht, das Schiffen bei Nacht den Weg weist. Er warnt vor gefährlichen Küsten, Riffen und Sandbänken und markiert die Einfahrt in einen Hafen.

== Geschichte ==
Die ersten Leuchtfeuer waren offene Feuer auf Hügeln und Türmen. Später brannten Kerzen und Öllampen hinter Glas, und im neunzehnten Jahrhundert setzten sich große [[Fresnel-Linse|Linsen]] durch, die das Licht zu einem weit sichtbaren Strahl bündeln.

== Leuchtturmwärter ==
Lange Zeit brauchte jeder Leuchtturm einen Wärter, der die Lampe versorgte, das Uhrwerk aufzog und die Scheiben vom Salz befreite. Heute arbeiten fast alle Leuchttürme automatisch.

<gallery>
Datei:Linse.jpg|Eine alte Linse
</gallery>

[[Kategorie:Leuchtturm]]
"""},
    {"title": "Merkur (Begriffsklärung)", "ns": 0, "id": 204, "rev": 7004, "timestamp": "2021-04-04T04:04:04Z",
     "text": "'''Merkur''' steht für:\n* [[Merkur (Planet)]], der sonnennächste Planet\n"
             "* [[Merkur (Mythologie)]], ein römischer Gott\n\n{{Begriffsklärung}}\n"},
    {"title": "Sauerteig", "ns": 0, "id": 205, "rev": 7005, "timestamp": "2024-01-05T07:30:00Z", "text": """\
{{Infobox Lebensmittel
| Name = Sauerteig
}}
'''Sauerteig''' ist ein Teig, der durch wilde [[Hefen]] und Milchsäurebakterien gelockert wird. Die Bakterien bilden Säuren, die dem Brot seinen kräftigen, leicht sauren Geschmack geben und es länger frisch halten.{{Internetquelle |url=https://example.org/brot |titel=Brotbacken}}

== Herstellung ==
Für das Anstellgut werden Mehl und Wasser gemischt und einige Tage warm gehalten. Dabei vermehren sich Hefen und Bakterien aus dem Mehl, bis der Teig Blasen wirft und säuerlich riecht. Ein Teil davon wird jedem neuen Brotteig zugesetzt, der Rest mit frischem Mehl weitergeführt.

[[Kategorie:Brot]]
"""},
    {"title": "Benutzer:Beispiel", "ns": 2, "id": 206, "rev": 7006, "timestamp": "2020-08-08T08:08:08Z",
     "text": "Ich schreibe gern über Flüsse und Leuchttürme.\n"},
]

EN_SITE = {"lang": "en", "dbname": "enwiki", "sitename": "Wikipedia", "base": "https://en.wikipedia.org/wiki/Main_Page",
           "namespaces": EN_NAMESPACES}
DE_SITE = {"lang": "de", "dbname": "dewiki", "sitename": "Wikipedia",
           "base": "https://de.wikipedia.org/wiki/Wikipedia:Hauptseite", "namespaces": DE_NAMESPACES}


def build(out_dir: Path, seed: int) -> dict:
    """Write the two sample dumps into `out_dir` (the content is fixed; `seed` is not needed)."""
    en = write_dump(out_dir / "enwiki-20240101-pages-articles-multistream.xml.bz2", _EN, multistream=True,
                    pages_per_stream=2, **EN_SITE)
    de = write_dump(out_dir / "dewiki-20240101-pages-articles.xml.bz2", _DE, **DE_SITE)
    return {"enwiki": en, "dewiki": de}
