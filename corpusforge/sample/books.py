"""Sample part `books`: a few short books written for corpusforge, in the formats people download.

* `gutenberg/90001-0.txt`: Project Gutenberg layout, UTF-8, `*** START OF THIS PROJECT GUTENBERG EBOOK ... ***`.
* `gutenberg/pg90002.txt.gz`: the `***START OF THE PROJECT GUTENBERG EBOOK ...***` variant, Latin-1 with CRLF
  line ends (as older files are), gzip-compressed.
* `gutenberg/90003.txt`: an old-style German text whose licence ends at `*END*THE SMALL PRINT!` and whose footer
  starts `End of the Project Gutenberg Etext`.
* `epub/the-clockmakers-apprentice.epub`: an EPUB 3 built with ebooklib (chapters in spine order, a nav page).
* `plain/notes-on-keeping-bees.txt`: a plain text without any Gutenberg markup.

`write_gutenberg` and `write_epub` are also what the tests use to build books.
"""

from __future__ import annotations

import gzip
import io
import textwrap
import zipfile
from datetime import datetime
from pathlib import Path

# What a written EPUB says about when it was made (its dcterms:modified and every zip member's date): fixed, so the
# same book is the same bytes whenever it is written.
EPUB_MODIFIED = datetime(2024, 1, 1)

GUTENBERG_LICENSE = """\
This eBook is for the use of anyone anywhere at no cost and with
almost no restrictions whatsoever.  You may copy it, give it away or
re-use it under the terms of the Project Gutenberg License included
with this eBook or online at www.gutenberg.org"""

GUTENBERG_FOOTER = """\
*** END OF THIS PROJECT GUTENBERG EBOOK {upper} ***

***** This file should be named {number}-0.txt or {number}-0.zip *****
This and all associated files of various formats will be found in:
        http://www.gutenberg.org/{number}/

Updated editions will replace the previous one--the old editions
will be renamed.

Creating the works from public domain print editions means that no
one owns a United States copyright in these works, so the Foundation
(and you!) can copy and distribute it in the United States without
permission and without paying copyright royalties.

*** START: FULL LICENSE ***

THE FULL PROJECT GUTENBERG LICENSE
PLEASE READ THIS BEFORE YOU DISTRIBUTE OR USE THIS WORK

Section 1.  General Terms of Use and Redistributing Project Gutenberg-tm
electronic works
"""

OLD_SMALL_PRINT = """\
**Welcome To The World of Free Plain Vanilla Electronic Texts**

**Etexts Readable By Both Humans and By Computers, Since 1971**

*****These Etexts Were Prepared By Thousands of Volunteers!*****

***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***
Why is this "Small Print!" statement here? You know: lawyers.
They tell us you might sue us if there is something wrong with
your copy of this etext, even if you got it for free from
someone other than us, and even if what's wrong is not our
fault.

*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*"""


def _wrap(paragraph: str) -> str:
    return "\n".join(textwrap.wrap(paragraph, width=70))


def gutenberg_text(*, number: int, title: str, author: str, language: str, chapters: list[tuple[str, list[str]]],
                   variant: str = "modern", encoding: str = "UTF-8", produced_by: str | None = None) -> str:
    """A book in Project Gutenberg's plain-text layout: header, licence marker, title page, chapters (prose
    hard-wrapped at 70 columns), footer. `variant`: modern (`*** START OF THIS ...`), nospace
    (`***START OF THE ...***`) or old (the 1990s small-print licence and `End of the Project Gutenberg Etext`)."""
    upper = title.upper()
    body = [f"{title}\n\nby\n\n{author}"]
    if produced_by:
        body.insert(0, f"Produced by {produced_by}")
    for heading, paragraphs in chapters:
        body.append(heading)
        body.extend(_wrap(p) if not p.startswith("    ") else p for p in paragraphs)
    text = "\n\n\n".join(body[:1]) + "\n\n\n" + "\n\n".join(body[1:]) + "\n"
    if variant == "old":
        head = (f"The Project Gutenberg Etext of {title}, by {author}\n\n{OLD_SMALL_PRINT}\n\n\n\n")
        foot = f"\n\n\nEnd of the Project Gutenberg Etext of {title}, by {author}\n"
        return head + text + foot
    start = (f"*** START OF THIS PROJECT GUTENBERG EBOOK {upper} ***" if variant == "modern"
             else f"***START OF THE PROJECT GUTENBERG EBOOK {upper}***")
    end = (GUTENBERG_FOOTER.format(upper=upper, number=number) if variant == "modern"
           else f"***END OF THE PROJECT GUTENBERG EBOOK {upper}***\n\n{GUTENBERG_LICENSE}\n")
    head = (f"The Project Gutenberg EBook of {title}, by {author}\n\n{GUTENBERG_LICENSE}\n\n\n"
            f"Title: {title}\n\nAuthor: {author}\n\nRelease Date: March 3, 2024 [EBook #{number}]\n\n"
            f"Language: {language}\n\nCharacter set encoding: {encoding}\n\n{start}\n\n\n\n\n")
    return head + text + f"\n\n\nEnd of the Project Gutenberg EBook of {title}, by {author}\n\n{end}"


def write_gutenberg(path: str | Path, *, encoding: str = "utf-8", crlf: bool = False, **book) -> Path:
    """Write `gutenberg_text(**book)` to `path` in `encoding` (gzip when the name ends in .gz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    declared = {"utf-8": "UTF-8", "latin-1": "ISO-8859-1", "ascii": "ASCII"}.get(encoding, encoding.upper())
    text = gutenberg_text(encoding=declared, **book)
    if crlf:
        text = text.replace("\n", "\r\n")
    data = text.encode(encoding)
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def write_epub(path: str | Path, *, title: str, author: str, language: str, identifier: str,
               chapters: list[tuple[str, list[str]]], manifest_order: list[int] | None = None) -> Path:
    """An EPUB 3 with one XHTML document per chapter, a nav page and an NCX. `manifest_order` lists the chapters in
    the order they are added to the package (the spine keeps reading order), to show that readers must follow
    the spine, not the file list."""
    from ebooklib import epub

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    book = epub.EpubBook()
    book.set_identifier(identifier)
    book.set_title(title)
    book.set_language(language)
    book.add_author(author)
    items = []
    for i, (heading, paragraphs) in enumerate(chapters):
        item = epub.EpubHtml(title=heading, file_name=f"chap_{i + 1:02d}.xhtml", lang=language)
        item.content = (f"<html><head><title>{heading}</title></head><body><h1>{heading}</h1>"
                        + "".join(f"<p>{p}</p>" for p in paragraphs) + "</body></html>")
        items.append(item)
    for i in manifest_order or range(len(items)):
        book.add_item(items[i])
    book.toc = items
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    built = io.BytesIO()
    epub.write_epub(built, book, {"mtime": EPUB_MODIFIED})
    out = io.BytesIO()
    with zipfile.ZipFile(built) as source, zipfile.ZipFile(out, "w") as archive:
        for member in source.infolist():  # ebooklib dates each member now: re-dated, the bytes otherwise as written
            dated = zipfile.ZipInfo(member.filename, date_time=EPUB_MODIFIED.timetuple()[:6])
            dated.compress_type, dated.external_attr = member.compress_type, member.external_attr
            archive.writestr(dated, source.read(member))
    path.write_bytes(out.getvalue())
    return path


# ------------------------------------------------------------------------------------------------------ the books
LAMPLIGHTER = {
    "number": 90001, "title": "The Lamplighter's Year", "author": "Margaret Hollis", "language": "English",
    "produced_by": "the corpusforge sample team",
    "chapters": [
        ("CHAPTER I.\n\nWinter", [
            "In the town of Ebbridge the lamps were still lit by hand, and the man who lit them was called Tobias "
            "Wren. Every evening at dusk he left his narrow house by the canal with a ladder on his shoulder and a "
            "long brass pole in his hand, and every morning before sunrise he walked the same streets again to put "
            "the flames out.",
            "Winter was his busiest season. The dark came early and stayed late, and the wind off the marshes "
            "found every crack in the glass. Tobias carried a tin of putty in his coat pocket and mended the panes "
            "as he went, muttering to the lamps as if they were old horses that needed coaxing.",
            "Children followed him along the quay, counting the lamps aloud. There were one hundred and twelve of "
            "them, and Tobias knew each by the sound its door made when he opened it.",
        ]),
        ("CHAPTER II.\n\nSpring", [
            "When the days lengthened, Tobias had time to spare. He painted the iron posts green, oiled the hinges "
            "and scraped the soot from the reflectors until they shone like spoons. The townspeople said that you "
            "could tell the season by the colour of his hands: black in winter, green in spring.",
            "It was in the spring that the letter from the council arrived. It was brief and politely worded, and "
            "it said that gas was to be laid beneath the streets before the year was out, and that the new lamps "
            "would light themselves.",
            "Tobias read it twice, folded it into quarters and put it behind the clock on the mantelpiece, where "
            "he kept the things he did not wish to think about.",
        ]),
        ("CHAPTER III.\n\nSummer", [
            "All summer the workmen dug trenches along the quay. Tobias watched them from his doorstep with his "
            "arms folded. They were cheerful young men from the city, and they called him grandfather, which he "
            "did not care for, and asked him the way to the inn, which he did not mind at all.",
            "One of them, a thin boy named Amos, came back in the evenings to walk the rounds with him. He asked "
            "about every lamp: why this one leaned, why that one burned with a blue edge, why the one by the chapel "
            "was always lit last. Tobias found, to his surprise, that he liked explaining.",
        ]),
        ("CHAPTER IV.\n\nAutumn", [
            "The gas came in October. On the first night the new lamps hissed into life all at once, at the turn "
            "of a valve in the works across the river, and the whole quay gasped and then applauded.",
            "Tobias stood at the end of the street with his ladder, which he had carried out of habit. Amos found "
            "him there and said nothing, and after a while they walked to the chapel together. The old lamp there "
            "had not been connected; the council had forgotten it. Tobias climbed up, opened the little door, and "
            "lit it one last time.",
            "It burned until morning, a small yellow flame among the white ones, and nobody in Ebbridge ever "
            "asked him to put it out.",
        ]),
    ],
}

HARBOUR = {
    "number": 90002, "title": "Letters from the Harbour", "author": "Edith Carrow", "language": "English",
    "chapters": [
        ("LETTER I", [
            "My dear Clara, the boat from Saint-Malo came in this morning with the tide, and I have taken a room "
            "above a café on the harbour where the coffee is strong and the landlady is kind. From my window I can "
            "see the fishing fleet, the lighthouse and a great deal of weather.",
            "You asked whether I was lonely. I confess I was, for the first week. But a harbour is never quiet for "
            "long, and it is hard to feel alone among so many people shouting about ropes.",
        ]),
        ("LETTER II", [
            "Clara, I have begun to sketch the boats. The fishermen were suspicious at first, thinking I was from "
            "the tax office, but when old Madame Leroux saw my drawing of her son's boat she bought it for two "
            "francs and a basket of mussels, and now everyone wants one.",
            "My French improves daily, though I am told my accent is still naïve and my grammar a catastrophe. "
            "The children correct me with great seriousness and then run off laughing.",
        ]),
        ("LETTER III", [
            "This will be my last letter from the harbour. The season is turning, the café is closing its "
            "shutters, and the landlady has given me a jar of her plum jam to take home.",
            "I shall bring you the sketches, all forty of them, and you shall tell me honestly which are good. I "
            "suspect the answer is none, but I have been happier making them than I have been in years.",
            "Your loving sister, Edith.",
        ]),
    ],
}

GARTEN = {
    "number": 90003, "title": "Der Garten am Fluss", "author": "Johanna Berger", "language": "German",
    "chapters": [
        ("Kapitel 1", [
            "Hinter dem Haus der Familie Brandt lag ein Garten, der bis an den Fluss hinunterreichte. Im Frühjahr "
            "blühten dort die Apfelbäume, und im Sommer saß die Großmutter unter der alten Linde und schälte "
            "Erbsen, während die Kinder am Ufer nach Steinen suchten.",
            "Niemand wusste mehr genau, wer den Garten angelegt hatte. Manche sagten, ein Gärtner aus Holland sei "
            "es gewesen, andere meinten, der Urgroßvater habe jeden Baum selbst gepflanzt.",
        ]),
        ("Kapitel 2", [
            "In einem nassen Herbst trat der Fluss über die Ufer. Das Wasser stand eine Woche lang zwischen den "
            "Beeten, und als es endlich zurückwich, lag eine dicke Schicht Schlamm über allem.",
            "Die Kinder halfen, die Wege freizuschaufeln. Unter dem Schlamm fanden sie eine alte Steinplatte mit "
            "einer Inschrift, die so verwittert war, dass nur eine Jahreszahl zu lesen war.",
        ]),
        ("Kapitel 3", [
            "Die Großmutter betrachtete die Platte lange und lächelte dann. Sie erzählte, dass ihr eigener "
            "Großvater sie gesetzt habe, im Jahr der großen Überschwemmung, damit man sich erinnere, dass der "
            "Fluss den Garten nicht nur nehme, sondern auch nähre.",
            "Im folgenden Frühjahr trugen die Apfelbäume so viele Früchte wie nie zuvor.",
        ]),
    ],
}

CLOCKMAKER = {
    "title": "The Clockmaker's Apprentice", "author": "Samuel Pryor", "language": "en",
    "identifier": "urn:uuid:5f1c2a9e-corpusforge-sample-0001",
    "chapters": [
        ("Chapter One: The Shop on Bell Street", [
            "The clockmaker's shop stood at the corner of Bell Street, and from the outside it looked like any "
            "other: a bow window, a green door, a sign with gold letters that needed repainting. Inside, it ticked.",
            "Hundreds of clocks hung on the walls and stood on the shelves, and no two of them agreed about the "
            "time. Old Mr. Fenwick said this was deliberate. A customer, he explained, should always be able to "
            "find a clock that said he was not late.",
        ]),
        ("Chapter Two: The Apprentice", [
            "Nell was twelve when she came to the shop, with a letter from the parish and a talent for taking "
            "things apart. Mr. Fenwick read the letter, looked at her over his spectacles, and handed her a broken "
            "pocket watch and a screwdriver the size of a needle.",
            "By evening the watch was in forty pieces on a clean cloth, each laid out in the order it had come "
            "out. Mr. Fenwick looked at the cloth for a long time and then said she could stay.",
        ]),
        ("Chapter Three: The Tower Clock", [
            "In the winter the great clock on the church tower stopped, and the town council sent for Mr. Fenwick. "
            "His knees were too stiff for the ladders, so Nell climbed up alone with a lantern and a bag of tools.",
            "She found the trouble in an hour: a pigeon's nest wedged between two wheels. She cleared it out, "
            "oiled the pivots and set the hands by the watch in her pocket, and when the bell struck noon the "
            "whole street below cheered.",
        ]),
    ],
}

BEES = """\
Notes on Keeping Bees

A hive should face the morning sun, so that the bees begin work early, and it should stand where the wind does
not strike it directly. A hedge or a low wall to the north is ideal.

In the first year, take no honey at all. The colony needs every drop to build its comb and to survive the winter,
and a strong colony in its second spring will repay your patience many times over.

Inspect the hive on warm, still days, in the middle of the morning when most of the foragers are out. Move
slowly, keep your shadow off the entrance, and never stand in the flight path.

In autumn, reduce the entrance so that the guards can defend it against wasps, and make sure the colony has
enough stores. A hive that feels light when you lift one side in October will need feeding.
"""


def build(out_dir: Path, seed: int) -> dict:
    """Write the sample books into `out_dir` (the content is fixed; `seed` is not needed)."""
    written = [
        write_gutenberg(out_dir / "gutenberg" / "90001-0.txt", **LAMPLIGHTER),
        write_gutenberg(out_dir / "gutenberg" / "pg90002.txt.gz", encoding="latin-1", crlf=True, variant="nospace",
                        **HARBOUR),
        write_gutenberg(out_dir / "gutenberg" / "90003.txt", variant="old", **GARTEN),
        write_epub(out_dir / "epub" / "the-clockmakers-apprentice.epub", manifest_order=[2, 0, 1], **CLOCKMAKER),
    ]
    plain = out_dir / "plain" / "notes-on-keeping-bees.txt"
    plain.parent.mkdir(parents=True, exist_ok=True)
    plain.write_text(BEES, encoding="utf-8")
    written.append(plain)
    return {"books": [str(p) for p in written]}
