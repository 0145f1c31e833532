"""Wikitext -> plain article text, with mwparserfromhell (a real wikitext parser), in every language.

Kept: paragraphs, list items, section headings (each on its own line), the text of links and of formatting, and
the text of common inline templates (`{{convert|330|m|ft}}` -> "330 metres", `{{lang|fr|Tour Eiffel}}`, dates, ...:
corpusforge.formats.wikitemplates). Dropped: all other templates (infoboxes, navboxes, citations, maintenance tags),
references, tables, galleries, maths, comments, magic words, file/image links with their captions, category links,
interlanguage links, and sections that are only apparatus (References, External links, Einzelnachweise, Liens
externes, ...). A section left empty loses its heading too.

File and category links are recognized by their namespace in any language: the names a dump's `<siteinfo>` gives,
the usual aliases (`Image:`, `Bild:`, `Fichier:`, ...), and - for a prefix neither knows - image options in the
link (`thumb`, `miniatur`, `vignette`, `200px`, ...) or a media file extension. An image caption is never article
text.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterable, Mapping

from mwparserfromhell.parser import tokens as T

from corpusforge.formats import wikitemplates

try:  # the C tokenizer (the wheels ship it); the pure-Python one gives the same tokens, slower
    from mwparserfromhell.parser import CTokenizer as _Tokenizer
except ImportError:  # pragma: no cover
    from mwparserfromhell.parser.tokenizer import Tokenizer as _Tokenizer

# Namespace -2 (Media) and 6 (File) in many languages, with their old names (Image, Bild, ...). Lower case.
FILE_NAMESPACES = frozenset("""
media file image datei bild medium fichier média archivo imagen immagine file arquivo imagem bestand afbeelding
plik grafika soubor obrázek fájl kép fișier imagine fil billede tiedosto kuva mynd dosya resim datoteka slika
датотека слика файл изображение медиа медия медиј зображення файл мультимедиа קובץ תמונה מדיה ملف صورة ميديا
پرونده رسانه تصویر चित्र फ़ाइल साँचा 파일 그림 미디어 ファイル 画像 メディア 文件 檔案 图像 圖像 媒体 媒體
berkas gambar tập_tin hình phương_tiện fitxer imatge fitxategi irudia ficheiro larawan talaksan dosiero bildo
""".replace("_", " ").split())
# Namespace 14 (Category). Lower case.
CATEGORY_NAMESPACES = frozenset("""
category kategorie catégorie categoría categoria categorie kategoria kategori kategorija kategória kategorien
luokka flokkur kategoriya категория категорія категорија категорыя קטגוריה تصنيف رده श्रेणी 분류 カテゴリ
分类 分類 thể_loại kategorio kategoriak kategoría catigurìa категори
""".replace("_", " ").split())
# Wikipedia language editions: `[[de:Foo]]` at the foot of an article is an interlanguage link, not text.
INTERLANGUAGE = frozenset("""
aa ab ace ady af ak als alt am ami an ang anp ar arc ary arz as ast atj av avk awa ay az azb ba ban bar bat-smg
bbc bcl be be-tarask be-x-old bg bh bi bjn blk bm bn bo bpy br bs bug bxr ca cbk-zam cdo ce ceb ch cho chr chy
ckb co cr crh cs csb cu cv cy da dag de din diq dsb dty dv dz ee el eml en eo es et eu ext fa fat ff fi fiu-vro
fj fo fon fr frp frr fur fy ga gag gan gcr gd gl glk gn gom gor got gpe gu guc gur guw gv ha hak haw he hi hif
ho hr hsb ht hu hy hyw hz ia id ie ig ii ik ilo inh io is it iu ja jam jbo jv ka kaa kab kbd kbp kcg kg ki kj
kk kl km kn ko koi kr krc ks ksh ku kv kw ky la lad lb lbe lez lfn lg li lij lld lmo ln lo lrc lt ltg lv mad
mai map-bms mdf mg mh mhr mi min mk ml mn mni mnw mr mrj ms mt mus mwl my myv mzn na nah nap nds nds-nl ne new
ng nia nl nn no nov nqo nrm nso nv ny oc olo om or os pa pag pam pap pcd pcm pdc pfl pi pih pl pms pnb pnt ps
pt pwn qu rm rmy rn ro roa-rup roa-tara ru rue rw sa sah sat sc scn sco sd se sg sh shi shn si simple sk skr sl
sm smn sn so sq sr srn ss st stq su sv sw szl szy ta tay tcy te tet tg th ti tk tl tly tn to tpi tr trv ts tt
tum tw ty tyv udm ug uk ur uz ve vec vep vi vls vo wa war wo wuu xal xh xmf yi yo yue za zea zgh zh
zh-classical zh-min-nan zh-yue zu
""".split())
# Image options (with their localized names): any of these in a link's non-final `|` segments marks an image.
IMAGE_OPTIONS = frozenset("""
thumb thumbnail frame framed frameless border left right center centre none upright baseline middle sub super
top text-top bottom text-bottom miniatur mini rahmenlos gerahmt rand links rechts zentriert ohne hochkant
vignette cadre encadré sans_cadre gauche droite centré néant redresse miniatura miniaturadeimagen marco sinmarco
borde izquierda derecha centro ninguno vertical riquadro senza_cornice bordo sinistra destra nessuno verticale
miniaturadaimagem esquerda direita nenhum miniatuur gecentreerd geen kader мини миниатюра слева справа центр без
рамка безрамки мініатюра ліворуч праворуч міні ляво дясно център рамка mały lewo prawo centruj brak ramka
miniatyr vänster höger ingen ram サムネイル 左 右 中央 なし 缩略图 縮圖 居中 无 無 섬네일 왼쪽 오른쪽 가운데 없음
küçükresim sol sağ orta yok
""".replace("_", " ").split())
IMAGE_OPTION_KEYS = frozenset("link alt page class lang upright hochkant verweis lien redresse vertical verticale "
                              "alternativtext seite".split())
_PIXELS = re.compile(r"^\d*\s*x?\s*\d+\s*(?:px|пкс|пікс|пиксел|픽셀|ピクセル|像素)$")
MEDIA_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".svg", ".tif", ".tiff", ".webp", ".xcf", ".bmp", ".pdf",
                    ".djvu", ".ogg", ".oga", ".ogv", ".webm", ".mp3", ".wav", ".flac", ".mid", ".midi", ".stl")
# `#REDIRECT [[Target]]` and its translations.
_REDIRECT = re.compile(
    r"^\s*#\s*(?:redirect|weiterleitung|redirection|redirección|redireccion|rinvia|rinvio|redirecionamento|"
    r"doorverwijzing|перенаправление|перенапр|пренасочване|перенаправлення|patrz|przekieruj|tam|omdirigering|"
    r"omdirigér|ohjaus|uudelleenohjaus|átirányítás|přesměruj|presmeruj|yönlendi̇rme|yönlendirme|alih|"
    r"yönlendir|転送|リダイレクト|重定向|넘겨주기|הפניה|تحويل|تغییرمسیر|अनुप्रेषित)\s*:?\s*\[\[",
    re.IGNORECASE)
# Templates that mark a disambiguation page, by wiki. Lower case, spaces for underscores.
DISAMBIGUATION_TEMPLATES = (
    "disambiguation", "disambig", "dab", "disamb", "dis", "hndis", "geodis", "numberdis", "letter-numbercombdisambig",
    "mil-unit-dis", "hospitaldis", "schooldis", "shipindex", "disambiguation cleanup", "begriffsklärung", "bkl",
    "homonymie", "desambiguación", "desambiguacion", "disambigua", "desambiguação", "dp", "neoznačenost",
    "неоднозначность", "многозначность", "неоднозначність", "пояснение", "strona ujednoznaczniająca",
    "ujednoznacznienie", "förgrening", "gren", "täsmennyssivu", "aimai", "曖昧さ回避", "消歧义", "消歧義", "동음이의",
    "anlam ayrımı", "rozcestník", "egyért", "dezambiguizare", "pagine de dezambiguizare", "flertydig",
)
DISAMBIGUATION_TITLES = ("(disambiguation)", "(begriffsklärung)", "(homonymie)", "(desambiguación)",
                         "(disambigua)", "(desambiguação)", "(значения)", "(значення)", "(пояснение)",
                         "(ujednoznacznienie)", "(täsmennyssivu)", "(rozcestník)", "(曖昧さ回避)")
# Sections that hold apparatus, not prose: dropped with their subsections. Lower case.
DROP_SECTIONS = (
    "references", "notes", "footnotes", "citations", "sources", "notes and references", "references and notes",
    "external links", "further reading", "see also", "bibliography", "literature", "works cited",
    "einzelnachweise", "weblinks", "literatur", "siehe auch", "anmerkungen", "quellen", "fußnoten", "belege",
    "références", "notes et références", "liens externes", "voir aussi", "bibliographie", "articles connexes",
    "referencias", "enlaces externos", "véase también", "bibliografía", "notas", "note", "collegamenti esterni",
    "voci correlate", "bibliografia", "altri progetti", "referências", "ligações externas", "ver também",
    "externe links", "referenties", "zie ook", "bronnen", "noten", "примечания", "ссылки", "литература",
    "см. также", "источники", "przypisy", "linki zewnętrzne", "zobacz też", "източници", "бележки",
    "външни препратки", "вижте също", "referenser", "externa länkar", "se även", "källor", "noter", "脚注", "出典",
    "関連項目", "外部リンク", "参考文献", "参考资料", "外部链接", "参见", "參考資料", "外部連結", "參見",
)
# Tags whose content is never article text (references, tables, media, code for other renderers).
DROP_TAGS = frozenset("ref references gallery table math chem ce timeline imagemap score graph mapframe maplink "
                      "templatedata templatestyles inputbox categorytree hiero includeonly noinclude charinsert "
                      "indicator section syntaxhighlight source tr td th caption style script".split())
BLOCK_TAGS = frozenset("p div li ul ol dl dt dd blockquote poem pre center h1 h2 h3 h4 h5 h6 hr".split())
_MAGIC_WORD = re.compile(r"__(\w+)__")
_EMPTY_PARENS = re.compile(r"\s*\(\s*(?:[,;:–—-]\s*)*\)")
# "Lincoln ({{IPA}}; born 1809)" leaves "(; born 1809)": punctuation that separated dropped templates goes too.
_PAREN_OPEN_CRUMBS = re.compile(r"\(\s*(?:[;,:]\s*)+(?=[^\s)])")
_PAREN_CLOSE_CRUMBS = re.compile(r"(?<=[^\s(])(?:\s*[;,:])+\s*\)")
_REPEATED_SEPARATORS = re.compile(r"([,;])(?:\s*[,;])+")
_PAREN_SPACES = re.compile(r"\([ \t]+|[ \t]+\)")
_SPACE_BEFORE_PUNCT = re.compile(r"[ \t]+([,.])")  # not ; : ! ?, which French spaces
_APOSTROPHES = re.compile(r"'{2,}")
_SPACES = re.compile(r"[ \t\u00a0\u2009\u200b]+")  # not newlines
_BLANK_LINES = re.compile(r"\n{3,}")
# A parser leaves unbalanced table/template markup as text; such lines are never prose.
_MARKUP_RESIDUE = re.compile(r"(?:\{\||\|\}|\|-|\{\{|\}\}|\||!\s)")
_RESIDUE_FIRST = ("{", "|", "}", "!")
_PARENTHETICAL = re.compile(r"\s*\([^()]*\)$")


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).casefold()


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """The names that decide what is markup in one wiki: namespace prefixes, templates, sections to drop, and how
    inline templates render."""

    file_prefixes: frozenset[str] = FILE_NAMESPACES
    category_prefixes: frozenset[str] = CATEGORY_NAMESPACES
    interlanguage: frozenset[str] = INTERLANGUAGE
    disambiguation_templates: frozenset[str] = frozenset(DISAMBIGUATION_TEMPLATES)
    drop_sections: frozenset[str] = frozenset(DROP_SECTIONS)
    inline_templates: Mapping[str, wikitemplates.Rule] = dataclasses.field(
        default_factory=lambda: wikitemplates.compile_rules(wikitemplates.INLINE_TEMPLATES), compare=False)

    @classmethod
    def for_site(cls, namespaces: dict[int, list[str]], *, disambiguation_templates: Iterable[str] | None = None,
                 drop_sections: Iterable[str] | None = None,
                 inline_templates: Mapping[str, str] | None = None) -> Vocabulary:
        """The built-in names plus a dump's own namespace names (`{key: [name, alias...]}` from `<siteinfo>`), and
        the built-in inline templates plus `inline_templates` (name -> pattern; `""` drops a template)."""
        files = {_norm(n) for key in (-2, 6) for n in namespaces.get(key, [])}
        cats = {_norm(n) for n in namespaces.get(14, [])}
        return cls(
            file_prefixes=FILE_NAMESPACES | files, category_prefixes=CATEGORY_NAMESPACES | cats,
            disambiguation_templates=frozenset(_norm(t) for t in (DISAMBIGUATION_TEMPLATES if disambiguation_templates
                                                                  is None else disambiguation_templates)),
            drop_sections=frozenset(_norm(s) for s in (DROP_SECTIONS if drop_sections is None else drop_sections)),
            inline_templates=wikitemplates.compile_rules(
                wikitemplates.INLINE_TEMPLATES, {_norm(name): rule for name, rule in (inline_templates or {}).items()}))


DEFAULT_VOCABULARY = Vocabulary()


@dataclasses.dataclass
class Converted:
    """Plain text of an article and the (normalized) names of the templates it used."""

    text: str
    templates: set[str]


def is_redirect(wikitext: str) -> bool:
    """Whether the wikitext is a redirect (`#REDIRECT [[...]]` or a translation of it)."""
    return bool(_REDIRECT.match(wikitext[:200]))


def is_disambiguation(title: str, templates: Iterable[str], vocab: Vocabulary = DEFAULT_VOCABULARY) -> bool:
    """Whether a page is a disambiguation page: a disambiguation template, or a `(disambiguation)`-style title."""
    if _norm(title).endswith(DISAMBIGUATION_TITLES):
        return True
    return any(t in vocab.disambiguation_templates or t.endswith(" disambiguation") for t in templates)


def convert(wikitext: str, vocab: Vocabulary = DEFAULT_VOCABULARY) -> Converted:
    """Plain text of one page's wikitext (see the module docstring for what is kept)."""
    if "&lt;/" in wikitext and "</" not in wikitext:
        # Text XML-escaped twice (copied out of a dump without unescaping): every tag would show as text.
        wikitext = html.unescape(wikitext)
    # `''` and `'''` stay text (and are removed with the crumbs): parsing them as tags makes the tokenizer give up
    # on whole regions of real articles whose quotes are unbalanced.
    tokens = _Tokenizer().tokenize(wikitext, 0, True)
    renderer = _Renderer(tokens, vocab)
    return Converted(text=_assemble(renderer.sections(), vocab), templates=renderer.templates)


def to_text(wikitext: str, vocab: Vocabulary = DEFAULT_VOCABULARY) -> str:
    """`convert(...).text`."""
    return convert(wikitext, vocab).text


_OPEN = (T.TemplateOpen, T.ArgumentOpen, T.WikilinkOpen, T.ExternalLinkOpen, T.CommentStart, T.HeadingStart,
         T.HTMLEntityStart, T.TagOpenOpen)
_OPEN_SET = frozenset(_OPEN)
_CLOSE = (T.TemplateClose, T.ArgumentClose, T.WikilinkClose, T.ExternalLinkClose, T.CommentEnd, T.HeadingEnd,
          T.HTMLEntityEnd, T.TagCloseSelfclose, T.TagCloseClose)
# The first of these inside a construct splits it: title | text, url text, name | params, tag attributes > contents.
_FIRST_SEPARATOR = (T.WikilinkSeparator, T.ExternalLinkSeparator, T.TemplateParamSeparator, T.ArgumentSeparator,
                    T.TagCloseOpen)


class _Renderer:
    """Walks mwparserfromhell's token stream and collects the text a reader would see, minus what the module
    drops. Working on tokens, not on the node tree the library would build from them, is several times faster
    (building the tree is most of mwparserfromhell's time), and dropped constructs are skipped in one step."""

    def __init__(self, tokens: list, vocab: Vocabulary):
        self.tokens = tokens
        self.vocab = vocab
        self.templates: set[str] = set()
        # One pass pairs every construct's opening token with its closing token and first separator (the tokenizer
        # emits them properly nested).
        self.close: dict[int, int] = {}
        self.separator: dict[int, int] = {}
        self.contents_end: dict[int, int] = {}  # a tag's `</`
        stack: list[int] = []
        open_, close, first = set(_OPEN), set(_CLOSE), set(_FIRST_SEPARATOR)
        for k, tok in enumerate(tokens):
            kind = type(tok)
            if kind in open_:
                stack.append(k)
            elif kind in close:
                if stack:
                    self.close[stack.pop()] = k
            elif stack and kind in first:
                self.separator.setdefault(stack[-1], k)
            elif stack and kind is T.TagOpenClose:
                self.contents_end[stack[-1]] = k
        self._dispatch = {T.Text: self._text, T.TemplateOpen: self._template, T.WikilinkOpen: self._wikilink,
                          T.ExternalLinkOpen: self._external, T.HTMLEntityStart: self._entity,
                          T.TagOpenOpen: self._tag, T.HeadingStart: self._heading}

    def sections(self) -> list[tuple[int, str, str]]:
        """(heading level, heading text, body text) per section; the lead section has level 0 and no heading."""
        tokens, out = self.tokens, []
        level, title, parts = 0, "", []
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if type(tok) is T.HeadingStart:
                out.append((level, title, "".join(parts)))
                end = self._end(i)
                level, title, parts = tok.level, self.render(i + 1, end).strip(), []
                i = end + 1
            else:
                i = self._node(i, parts)
        out.append((level, title, "".join(parts)))
        return out

    def render(self, i: int, end: int) -> str:
        parts: list[str] = []
        while i < end:
            i = self._node(i, parts)
        return "".join(parts)

    def _end(self, i: int) -> int:
        return self.close.get(i, len(self.tokens))

    def _raw(self, i: int, end: int) -> str:
        """The plain characters among tokens [i, end), nested constructs left out (for names and titles)."""
        tokens, parts = self.tokens, []
        while i < end:
            kind = type(tokens[i])
            if kind is T.Text:
                parts.append(tokens[i].text)
            elif kind in _OPEN:
                i = self._end(i)
            i += 1
        return "".join(parts)

    def _node(self, i: int, out: list[str]) -> int:
        """Render the construct that starts at token i into `out`; return the index after it."""
        handler = self._dispatch.get(type(self.tokens[i]))
        if handler is None:  # comments, arguments ({{{x}}}), stray tokens: nothing to show
            return self._end(i) + 1 if type(self.tokens[i]) in _OPEN else i + 1
        return handler(i, out)

    def _text(self, i: int, out: list[str]) -> int:
        out.append(self.tokens[i].text)
        return i + 1

    def _template(self, i: int, out: list[str]) -> int:
        """An inline template in the vocabulary's table shows its text; any other template shows nothing."""
        end = self._end(i)
        first = min(self.separator.get(i, end), end)
        name = _norm(self._raw(i + 1, first)).removeprefix("template:")
        self.templates.add(name)
        rule = wikitemplates.rule_for(name, self.vocab.inline_templates)
        if rule is not None:
            out.append(rule(self._params(first, end)))
        return end + 1

    def _params(self, i: int, end: int) -> dict[str, str]:
        """A template's parameters as text, from its first `|` (token i) to its close: positional ones under "1",
        "2", ..., named ones (`abbr=on`) under their name; nested constructs rendered."""
        tokens, params, position = self.tokens, {}, 0
        while i < end:  # tokens[i] is a `|` of this template
            j, equals = i + 1, None
            while j < end and type(tokens[j]) is not T.TemplateParamSeparator:
                kind = type(tokens[j])
                if kind is T.TemplateParamEquals and equals is None:
                    equals = j
                elif kind in _OPEN_SET:
                    j = self._end(j)
                j += 1
            if equals is None:
                position += 1
                params[str(position)] = self.render(i + 1, j).strip()
            else:
                params[self._raw(i + 1, equals).strip()] = self.render(equals + 1, j).strip()
            i = j
        return params

    def _entity(self, i: int, out: list[str]) -> int:
        end = self._end(i)
        kinds = {type(t) for t in self.tokens[i + 1:end]}
        body = self._raw(i + 1, end)
        try:
            if T.HTMLEntityNumeric in kinds:
                out.append(chr(int(body, 16 if T.HTMLEntityHex in kinds else 10)))
            else:
                out.append(html.unescape(f"&{body};"))
        except (ValueError, OverflowError):  # an entity that names no character
            pass
        return end + 1

    def _heading(self, i: int, out: list[str]) -> int:  # a heading inside a tag
        end = self._end(i)
        out.append("\n" + self.render(i + 1, end).strip() + "\n")
        return end + 1

    def _external(self, i: int, out: list[str]) -> int:
        end = self._end(i)
        sep = self.separator.get(i)
        if sep is not None and sep < end:  # [url text] shows its text; a bare or numbered URL nothing worth keeping
            out.append(self.render(sep + 1, end))
        return end + 1

    def _tag(self, i: int, out: list[str]) -> int:
        end = self._end(i)
        j = i + 1
        while j < end and type(self.tokens[j]) is T.Text:
            j += 1
        tag = self._raw(i + 1, j).strip().lower()
        if tag in DROP_TAGS:
            return end + 1
        if tag in ("br", "hr"):
            out.append("\n")
            return end + 1
        start = self.separator.get(i)
        if start is None or start > end or type(self.tokens[end]) is T.TagCloseSelfclose:  # no contents
            return end + 1
        contents = self.render(start + 1, self.contents_end.get(i, end))
        out.append(f"\n{contents}\n" if tag in BLOCK_TAGS else contents)
        return end + 1

    def _wikilink(self, i: int, out: list[str]) -> int:
        end = self._end(i)
        sep = self.separator.get(i)
        if sep is not None and sep > end:
            sep = None
        title_end = sep if sep is not None else end
        title = self._raw(i + 1, title_end).strip()
        text = self._raw(sep + 1, end) if sep is not None else None
        if not title.startswith(":"):  # [[:Category:X]], [[:de:X]] are inline links to that page, shown as text
            prefix, colon, rest = title.partition(":")
            if colon:
                prefix = _norm(prefix)
                vocab = self.vocab
                if prefix in vocab.file_prefixes or prefix in vocab.category_prefixes or prefix in vocab.interlanguage:
                    return end + 1
                if _looks_like_media(rest, text):
                    return end + 1
        if sep is None:
            out.append(self.render(i + 1, title_end).strip().removeprefix(":"))
        elif not text.strip() and sep + 1 == end:  # the pipe trick: [[Foo (bar)|]] shows "Foo"
            out.append(_PARENTHETICAL.sub("", title.rpartition(":")[2]))
        else:
            out.append(self.render(sep + 1, end))
        return end + 1


def _looks_like_media(name: str, text: str | None) -> bool:
    """A link under a namespace prefix we do not know is an image when it names a media file or carries image
    options before its caption."""
    if name.strip().lower().endswith(MEDIA_EXTENSIONS):
        return True
    if text is None:
        return False
    for seg in text.split("|")[:-1]:
        seg = _norm(seg)
        if seg in IMAGE_OPTIONS or _PIXELS.match(seg) or seg.partition("=")[0].strip() in IMAGE_OPTION_KEYS:
            return True
    return False


def _assemble(sections: list[tuple[int, str, str]], vocab: Vocabulary) -> str:
    """Join sections into the article text: apparatus sections go (with their subsections), and a heading goes
    when nothing under it (its body or any subsection) has text."""
    bodies = []
    drop_below = None
    for level, title, body in sections:
        if drop_below is not None and level > drop_below:
            continue
        drop_below = None
        if level and _norm(title) in vocab.drop_sections:
            drop_below = level
            continue
        bodies.append((level, title, _tidy(body)))
    keep = [bool(body) for _, _, body in bodies]
    for i in range(len(bodies) - 1, -1, -1):  # a heading stays if a subsection under it kept text
        level = bodies[i][0]
        j = i + 1
        while j < len(bodies) and bodies[j][0] > level and not keep[i]:
            keep[i] = keep[j]
            j += 1
    parts = []
    for (level, title, body), kept in zip(bodies, keep):
        if not kept:
            continue
        if level and title:
            parts.append(_tidy(title))
        if body:
            parts.append(body)
    return "\n\n".join(parts)


def _tidy(text: str) -> str:
    """Whitespace and the crumbs that dropped markup leaves: magic words, `()` whose content was a template,
    unbalanced `''`, lines of table or template syntax a parser could not match, and entities inside text the
    parser gave up on."""
    if "&" in text:
        text = html.unescape(text)
    text = _MAGIC_WORD.sub(lambda m: "" if not any(c.islower() for c in m.group(1)) else m.group(0), text)
    text = _APOSTROPHES.sub("", text)
    text = _PAREN_CLOSE_CRUMBS.sub(")", _PAREN_OPEN_CRUMBS.sub("(", _REPEATED_SEPARATORS.sub(r"\1", text)))
    text = _PAREN_SPACES.sub(lambda m: m.group(0).strip(), _EMPTY_PARENS.sub("", text))
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text))
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if not (line[:1] in _RESIDUE_FIRST and _MARKUP_RESIDUE.match(line))]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
