"""Inline wiki templates -> the text a reader sees, from a table, since a dump cannot expand them.

A pages-articles dump has no Template: or Module: pages, so `{{convert|330|m|ft}}` cannot be expanded the way
MediaWiki does. Like other extractors (wikiextractor without a template dump, wtf_wikipedia), corpusforge keeps a
table of the common *inline* templates - the ones whose output is part of a sentence - and how to render them;
every other template (infoboxes, navboxes, citations, hatnotes, maintenance tags) is dropped. The table was chosen
by counting the templates met in the prose of the real articles in ../shared/data (docs/books_wikipedia.md).

A rule is either a pattern (data: a recipe's `inline_templates` adds or replaces them) or a function for the few
templates that compute their text (units, dates, fractions, pronunciations):

* `{1}`: the first positional parameter; `{text}`: the named parameter `text`; `{-1}`: the last positional one;
* `{2|text|1}`: the first of these that is not empty;
* `{*}`, `{*-}`, `{* }`: all positional parameters joined by nothing, `-` or a space.

Parameters arrive as plain text already (links, formatting and nested templates rendered). Names are looked up
normalized (case-folded, `_` as space); `lang-*` stands for every name that starts with `lang-`. Nothing here
depends on the day it runs: `{{birth date and age}}` gives the date and leaves out the age, which changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Params = Mapping[str, str]  # a template's parameters as text: positional ones under "1", "2", ...
Rule = Callable[[Params], str]

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_MONTH_NAMES = {m.casefold(): m for m in MONTHS} | {m[:3].casefold(): m for m in MONTHS} | {"sept": "September"}
_FIELD = re.compile(r"\{([^{}]*)\}")
_NUMBER = re.compile(r"^[-−+]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:e[-−+]?\d+)?(?:\+\d+/\d+)?$|^\d+/\d+$")
_GROUPABLE = re.compile(r"^(\d{4,})(\.\d+)?$")
_MULTIPLIER = re.compile(r"^e(3|6|9|12)(?=\D)")
_MULTIPLIER_WORDS = {"3": "thousand", "6": "million", "9": "billion", "12": "trillion"}

# {{convert}} units: code -> (singular, plural, symbol). The input is shown (not converted: that needs
# Module:Convert's rounding rules), spelled out by default as Wikipedia does, as a symbol with abbr=on.
CONVERT_UNITS: dict[str, tuple[str, str, str]] = {
    "m": ("metre", "metres", "m"), "km": ("kilometre", "kilometres", "km"), "cm": ("centimetre", "centimetres", "cm"),
    "mm": ("millimetre", "millimetres", "mm"), "mi": ("mile", "miles", "mi"), "ft": ("foot", "feet", "ft"),
    "in": ("inch", "inches", "in"), "yd": ("yard", "yards", "yd"), "nmi": ("nautical mile", "nautical miles", "nmi"),
    "ly": ("light-year", "light-years", "ly"), "AU": ("astronomical unit", "astronomical units", "AU"),
    "m2": ("square metre", "square metres", "m²"), "km2": ("square kilometre", "square kilometres", "km²"),
    "cm2": ("square centimetre", "square centimetres", "cm²"), "ha": ("hectare", "hectares", "ha"),
    "acre": ("acre", "acres", "acres"), "sqmi": ("square mile", "square miles", "sq mi"),
    "mi2": ("square mile", "square miles", "sq mi"), "sqft": ("square foot", "square feet", "sq ft"),
    "ft2": ("square foot", "square feet", "sq ft"), "l": ("litre", "litres", "L"), "L": ("litre", "litres", "L"),
    "ml": ("millilitre", "millilitres", "ml"), "m3": ("cubic metre", "cubic metres", "m³"),
    "km3": ("cubic kilometre", "cubic kilometres", "km³"), "cuft": ("cubic foot", "cubic feet", "cu ft"),
    "USgal": ("US gallon", "US gallons", "US gal"), "impgal": ("imperial gallon", "imperial gallons", "imp gal"),
    "kg": ("kilogram", "kilograms", "kg"), "g": ("gram", "grams", "g"), "mg": ("milligram", "milligrams", "mg"),
    "t": ("tonne", "tonnes", "t"), "lb": ("pound", "pounds", "lb"), "oz": ("ounce", "ounces", "oz"),
    "st": ("stone", "stone", "st"), "ST": ("short ton", "short tons", "short tons"),
    "LT": ("long ton", "long tons", "long tons"), "C": ("°C", "°C", "°C"), "F": ("°F", "°F", "°F"),
    "K": ("K", "K", "K"), "C-change": ("°C", "°C", "°C"), "F-change": ("°F", "°F", "°F"),
    "km/h": ("kilometre per hour", "kilometres per hour", "km/h"),
    "kph": ("kilometre per hour", "kilometres per hour", "km/h"), "mph": ("mile per hour", "miles per hour", "mph"),
    "m/s": ("metre per second", "metres per second", "m/s"), "ft/s": ("foot per second", "feet per second", "ft/s"),
    "kn": ("knot", "knots", "kn"), "W": ("watt", "watts", "W"), "kW": ("kilowatt", "kilowatts", "kW"),
    "MW": ("megawatt", "megawatts", "MW"), "GW": ("gigawatt", "gigawatts", "GW"),
    "hp": ("horsepower", "horsepower", "hp"), "PS": ("metric horsepower", "metric horsepower", "PS"),
    "J": ("joule", "joules", "J"), "kJ": ("kilojoule", "kilojoules", "kJ"), "MJ": ("megajoule", "megajoules", "MJ"),
    "kWh": ("kilowatt-hour", "kilowatt-hours", "kWh"), "cal": ("calorie", "calories", "cal"),
    "kcal": ("kilocalorie", "kilocalories", "kcal"), "Pa": ("pascal", "pascals", "Pa"),
    "kPa": ("kilopascal", "kilopascals", "kPa"), "MPa": ("megapascal", "megapascals", "MPa"),
    "psi": ("pound per square inch", "pounds per square inch", "psi"), "bar": ("bar", "bars", "bar"),
    "atm": ("atmosphere", "atmospheres", "atm"), "N": ("newton", "newtons", "N"),
    "kN": ("kilonewton", "kilonewtons", "kN"), "lbf": ("pound-force", "pounds-force", "lbf"),
}
CONVERT_UNIT_ALIASES = {"mile": "mi", "miles": "mi", "foot": "ft", "feet": "ft", "metre": "m", "metres": "m",
                        "meter": "m", "meters": "m", "sqkm": "km2", "acres": "acre", "knot": "kn", "knots": "kn"}
# What sits between the numbers of a range: {{convert|5|to|10|km}}, {{convert|3|x|4|m}}.
CONVERT_RANGES = {"-": "–", "–": "–", "to": " to ", "to(-)": " to ", "and": " and ", "and(-)": " and ", "or": " or ",
                  "x": " × ", "×": " × ", "by": " by ", "+/-": " ± ", "±": " ± ", ",": ", ", "+": " + "}
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(?:-[a-z]+)*$")
_IPAC_LABELS = frozenset("lang local pron pronunciation us uk also ipa audio".split())


def _positional(params: Params) -> list[str]:
    return [params[k] for k in sorted((k for k in params if k.isdecimal()), key=int)]


def _is_yes(value: str) -> bool:
    return value.strip().casefold() in ("y", "yes", "on", "true", "1")


def _field(spec: str) -> Rule:
    """One `{...}` of a pattern: alternatives tried in order, the first non-empty wins."""
    getters: list[Rule] = []
    for alt in spec.split("|"):
        key = alt.strip()
        if key.startswith("*"):  # the separator after `*` may be a space: taken unstripped
            sep = alt.lstrip()[1:]
            getters.append(lambda p, sep=sep: sep.join(v for v in _positional(p) if v))
        elif key == "-1":
            getters.append(lambda p: next((v for v in reversed(_positional(p)) if v), ""))
        else:
            getters.append(lambda p, key=key: p.get(key, ""))

    def get(params: Params) -> str:
        for getter in getters:
            value = getter(params)
            if value:
                return value
        return ""
    return get


def pattern(spec: str) -> Rule:
    """A rule from a pattern such as `c. {1}` or `{2|text}` (see the module docstring)."""
    leftover = _FIELD.sub("", spec)
    if "{" in leftover or "}" in leftover:
        raise ValueError(f"unbalanced braces in template pattern {spec!r}")
    pieces: list[str | Rule] = []
    last = 0
    for m in _FIELD.finditer(spec):
        pieces.append(spec[last:m.start()])
        pieces.append(_field(m.group(1)))
        last = m.end()
    pieces.append(spec[last:])
    pieces = [p for p in pieces if p != ""]
    if all(isinstance(p, str) for p in pieces):
        text = "".join(pieces)
        return lambda params: text
    return lambda params: "".join(p if isinstance(p, str) else p(params) for p in pieces)


# ------------------------------------------------------------------------------------------------------- numbers
def _number(text: str) -> str:
    """A number as Wikipedia shows it: thousands grouped (`12345` -> `12,345`), a real minus sign, `1+1/2` as
    `1 1/2`."""
    text = text.strip().replace("+", " ", 1) if "/" in text else text.strip()
    sign = ""
    if text[:1] in "-−":
        sign, text = "−", text[1:]
    m = _GROUPABLE.match(text)
    if m:
        text = f"{int(m.group(1)):,}" + (m.group(2) or "")
    return sign + text


def _unit(code: str, plural: bool, symbol: bool, adjective: bool, us: bool) -> str:
    """How {{convert}} shows its input unit after the number, with the space (or, `adj=on`, hyphen) before it."""
    multiplier = ""
    m = _MULTIPLIER.match(code)
    if m:  # e6acre: millions of acres
        multiplier, code = _MULTIPLIER_WORDS[m.group(1)] + " ", code[m.end():]
    names = CONVERT_UNITS.get(CONVERT_UNIT_ALIASES.get(code, code))
    if names is None:  # a unit the table lacks is shown by its code, which is usually its symbol
        return f" {multiplier}{code}" if code else ""
    if symbol:
        return f" {multiplier}{names[2]}"
    name = names[0] if adjective or not plural else names[1]
    if us:
        name = name.replace("metre", "meter").replace("litre", "liter")
    if adjective and not multiplier and name[0].isalpha():  # a 330-metre tower
        return "-" + name.replace(" ", "-")
    return f" {multiplier}{name}"


def convert(params: Params) -> str:
    """{{convert|330|m|ft}} -> `330 metres`; ranges (`5|to|10|km`), compound inputs (`5|ft|6|in`), `abbr=on`,
    `adj=on`, `sp=us`. The converted value in parentheses is left out."""
    values = _positional(params)
    if not values or not _NUMBER.match(values[0]):
        return ""
    parts = [_number(values[0])]
    k = 1
    while k + 1 < len(values) and values[k] in CONVERT_RANGES and _NUMBER.match(values[k + 1]):
        parts += [CONVERT_RANGES[values[k]], _number(values[k + 1])]
        k += 2
    abbr = params.get("abbr", "").casefold()
    if abbr == "values":
        return "".join(parts)
    symbol = abbr in ("on", "in")
    adjective = _is_yes(params.get("adj", "")) or _is_yes(params.get("sing", ""))  # sing=on: the old name
    us = params.get("sp", "").casefold() == "us"
    unit = values[k] if k < len(values) else ""
    parts.append(_unit(unit, len(parts) > 1 or values[0] != "1", symbol, adjective, us))
    k += 1
    while k + 1 < len(values) and _NUMBER.match(values[k]) and (values[k + 1] in CONVERT_UNITS):
        # a compound input, {{convert|5|ft|6|in|cm}}: 5 feet 6 inches
        parts += [" ", _number(values[k]), _unit(values[k + 1], values[k] != "1", symbol, False, us)]
        k += 2
    return "".join(parts)


def convert_abbreviated(params: Params) -> str:
    """{{cvt}}: {{convert}} with abbr=on."""
    return convert({**params, "abbr": params.get("abbr") or "on"})


def fraction(params: Params) -> str:
    """{{frac|1|2}} -> `1/2`, {{frac|3|1|2}} -> `3 1/2`, {{frac|4}} -> `1/4`."""
    values = _positional(params)
    if len(values) >= 3:
        return f"{values[0]} {values[1]}/{values[2]}"
    if len(values) == 2:
        return f"{values[0]}/{values[1]}"
    return f"1/{values[0]}" if values else ""


_SUPERSCRIPT = str.maketrans("0123456789-−+", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁻⁺")


def value(params: Params) -> str:
    """{{val|1.23|0.05|e=3|u=m}} -> `1.23±0.05×10³ m`: number, uncertainty, exponent, unit (`u`, `ul`) and per-unit
    (`up`, `upl`), prefix `p` and suffix `s`."""
    values = _positional(params)
    text = values[0] if values else ""
    if len(values) >= 3:
        text += f"+{values[1].lstrip('+')}−{values[2].lstrip('-−')}"
    elif len(values) == 2:
        text += values[1] if values[1].startswith("(") else f"±{values[1]}"
    if params.get("e"):
        text += times_ten({"1": params["e"]})
    unit = params.get("u") or params.get("ul")
    if unit:
        text += unit if unit in ("%", "°", "′", "″") else " " + unit
    per = params.get("up") or params.get("upl")
    if per:
        text += "/" + per
    return params.get("p", "") + text + params.get("s", "")


def times_ten(params: Params) -> str:
    """{{e|5}} -> `×10⁵`."""
    return "×10" + params.get("1", "").translate(_SUPERSCRIPT)


# --------------------------------------------------------------------------------------------------------- dates
def _month(text: str) -> str | None:
    text = text.strip()
    if text.isdecimal():
        return MONTHS[int(text) - 1] if 1 <= int(text) <= 12 else None
    return _MONTH_NAMES.get(text.casefold().rstrip("."))


def _date(year: str, month: str, day: str, dmy: bool) -> str:
    """`14 March 1879` (dmy) or `March 14, 1879`; a missing day gives `March 1879`, a missing month the year."""
    name = _month(month) if month else None
    if name is None:
        return year
    if not day.strip().isdecimal():
        return f"{name} {year}"
    return f"{int(day)} {name} {year}" if dmy else f"{name} {int(day)}, {year}"


def _ymd(values: list[str]) -> tuple[str, str, str]:
    year, month, day = (values + ["", "", ""])[:3]
    return year, month, day


def date(params: Params) -> str:
    """{{birth date|1879|3|14}} -> `March 14, 1879` (`df=y`: `14 March 1879`), and the other date templates of the
    family; the "and age" ones leave the age out (it depends on today)."""
    year, month, day = _ymd(_positional(params))
    if not year.strip().isdecimal():  # a placeholder (YYYY) or garbage: MediaWiki shows an error
        return ""
    return _date(year, month, day, dmy=_is_yes(params.get("df", "")) and not _is_yes(params.get("mf", "")))


def death_date_and_age(params: Params) -> str:
    """{{death date and age|1955|4|18|1879|3|14}} -> `April 18, 1955 (aged 76)`: the age from the two dates."""
    values = _positional(params)
    text = date(params)
    try:
        dy, by = int(values[0]), int(values[3])
    except (IndexError, ValueError):
        return text
    try:
        later = (int(values[1]), int(values[2])) < (int(values[4]), int(values[5]))
        age = f"{dy - by - later}"
    except (IndexError, ValueError):  # months or days unknown: two possible ages
        age = f"{dy - by - 1}–{dy - by}"
    return f"{text} (aged {age})"


def as_of(params: Params) -> str:
    """{{as of|2020|5}} -> `As of May 2020`; `lc=y`, `since=y`, `alt=`, `df=US`, `pre=`, `post=`."""
    if params.get("alt"):
        return params["alt"]
    year, month, day = _ymd(_positional(params))
    lead = "since" if params.get("since") else "as of"
    if not params.get("lc"):
        lead = lead.capitalize()
    pre = params.get("pre", "")
    when = _date(year, month, day, dmy=params.get("df", "").casefold() != "us")
    return f"{lead} {pre + ' ' if pre else ''}{when}{params.get('post', '')}"


# ------------------------------------------------------------------------------------------- words and spellings
def sic(params: Params) -> str:
    """{{sic}} -> `[sic]`; {{sic|recieve}} -> `recieve [sic]`; `hide=y` shows the word alone."""
    word = "".join(_positional(params))
    if params.get("hide"):
        return word
    return f"{word} [sic]" if word else "[sic]"


def ipa(params: Params) -> str:
    """{{IPA|/ˈæ/}} -> `/ˈæ/`; the newer form with a language code first, {{IPA|fr|kʁisteva}} -> `[kʁisteva]`."""
    values = _positional(params)
    if len(values) >= 2 and _LANGUAGE_CODE.match(values[0]):
        return f"[{values[1]}]"
    return values[0] if values else ""


def ipa_english(params: Params) -> str:
    """{{IPAc-en|ˈ|l|ɪ|ŋ|k|ən}} -> `/ˈlɪŋkən/`: the pieces joined, labels (`lang`, `US`, `pron`) left out."""
    pieces = []
    for piece in _positional(params):
        if piece.casefold() in _IPAC_LABELS:
            continue
        pieces.append(", " if piece == "," else piece.replace("_", " "))
    text = "".join(pieces).strip()
    return f"/{text}/" if text else ""


def small_caps(params: Params) -> str:
    """{{smallcaps|bc}} -> `BC`: small capitals read as capitals."""
    return params.get("1", "").upper()


def respelling(params: Params) -> str:
    """{{respell|LING|kən}} -> `LING-kən`."""
    return "-".join(v.replace("_", " ") for v in _positional(params) if v)


# ---------------------------------------------------------------------------------------------------- the table
# Names as wikitext.convert looks them up: case-folded, spaces for underscores.
INLINE_TEMPLATES: dict[str, str | Rule] = {
    # formatting and wrappers: their text
    **dict.fromkeys([
        "nowrap", "nobr", "nobreak", "small", "smaller", "big", "bigger", "large", "larger", "huge", "midsize",
        "nobold", "noitalic", "nocaps", "em", "strong", "var", "mvar", "math", "samp", "kbd", "mono", "code", "sup",
        "sub", "overline", "underline", "not a typo", "proper name", "as written", "vanchor", "visible anchor",
        "abbr", "abbrlink", "tooltip", "hover title", "chem2", "nastaliq", "polytonisch", "unicode"], "{1}"),
    **dict.fromkeys(["smallcaps", "small caps", "sc"], small_caps),
    "resize": "{2|1}", "font": "{text|1}", "angbr": "⟨{1}⟩", "angle bracket": "⟨{1}⟩", "gloss": "‘{1}’",
    "radic": "√{1}", "linktext": "{* }", "keypress": "{*+}", "chem": "{*}", "sortname": "{1} {2}",
    # other languages, transliterations, pronunciations: the text (Wikipedia's "French:" labels are left out)
    "lang": "{text|2}", "langx": "{text|2}", "rtl-lang": "{text|2}", "lang-*": "{text|1}", "transl": "{-1}",
    "transliteration": "{-1}", "script": "{2|1}", "native name": "{2}", "wikt-lang": "{3|2}", "ill": "{lt|1}",
    "interlanguage link": "{lt|1}", "nihongo": "{1} ({2}, {3})", "nihongo2": "{1}", "ipa": ipa, "ipa-*": "[{1}]",
    "ipac-en": ipa_english, "respell": respelling, "sic": sic,
    # quotations, as a paragraph of their own
    **dict.fromkeys(["quote", "blockquote", "quotation", "cquote", "bquote"], "\n{text|quote|1}\n"),
    # numbers, units, money
    "convert": convert, "cvt": convert_abbreviated, "frac": fraction, "fraction": fraction, "sfrac": fraction,
    "val": value, "e": times_ten, "unité": "{1} {2}", "us$": "US${1}", "usd": "US${1}", "£": "£{1}", "gbp": "£{1}",
    "€": "€{1}", "euro": "€{1}", "¥": "¥{1}", "jpy": "¥{1}", "₹": "₹{1}", "inr": "₹{1}",
    # dates
    **dict.fromkeys(["birth date", "death date", "start date", "end date", "birth date and age", "bda",
                     "start date and age"], date),
    "death date and age": death_date_and_age, "dda": death_date_and_age, "birth year and age": "{1}",
    "as of": as_of, "asof": as_of, "circa": "c. {1}", "c.": "c. {1}", "floruit": "fl. {1}", "fl.": "fl. {1}",
    "reign": "r. {1} – {2}", "oldstyledate": "{1} [O.S. {3}] {2}",
    # characters
    "nbsp": " ", "spaces": " ", "thinsp": " ", "zwsp": "", "ndash": "–", "en dash": "–", "mdash": "—",
    "em dash": "—", "emdash": "—", "mdashb": "—", "snd": " – ", "spaced ndash": " – ", "spaced en dash": " – ",
    "·": " · ", "dot": " · ", "middot": " · ", "'": "'", "'s": "'s", "' \"": "'\"", "\" '": "\"'", "!": "|",
    "=": "=",
    # ship prefixes: {{HMS|Irresistible|1898}} -> HMS Irresistible
    **{prefix: prefix.upper() + " {1}" for prefix in ("hms", "uss", "hmas", "hmcs", "rms")},
}


def compile_rules(*tables: Mapping[str, str | Rule]) -> dict[str, Rule]:
    """One lookup table from rule tables keyed by normalized name (later tables win), patterns compiled."""
    return {name: pattern(rule) if isinstance(rule, str) else rule for table in tables for name, rule in table.items()}


def rule_for(name: str, rules: Mapping[str, Rule]) -> Rule | None:
    """The rule for a normalized template name: its own, else its family's (`lang-fr` -> `lang-*`), else None."""
    rule = rules.get(name)
    if rule is None and "-" in name:
        rule = rules.get(name[:name.index("-") + 1] + "*")
    return rule
