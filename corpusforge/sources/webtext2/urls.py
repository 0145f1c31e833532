"""URL normalization and the link rules of WebText2: which Reddit submissions give a page worth fetching.

A submission's URL is normalized (scheme and host case, IDNA, default ports, fragments, tracking parameters, HTML
escapes left in old dumps) so the same page submitted twice counts as one link; then the rules drop self posts, NSFW
posts when asked, links to non-HTML targets and to blocked domains, and (under the `max` rule) low scores. Every drop
has a named reason that the caller counts.
"""

from __future__ import annotations

import dataclasses
import html
import posixpath
from datetime import datetime
from typing import Any, Literal, TypedDict
from urllib.parse import quote, urlsplit, urlunsplit

from corpusforge.documents import parse_time
from corpusforge.formats import pushshift
from corpusforge.options import option

# Query parameters that only track the click and never change the page; removing them merges copies of one link.
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "mc_cid", "mc_eid",
    "_ga", "_gl", "_hsenc", "_hsmi", "ref_src", "ref_url", "cmpid", "spm", "smid",
})
TRACKING_PREFIXES = ("utm_",)

# Hosts whose pages are not text worth having: Reddit itself, image and video hosts, and Wikipedia (its own source
# in the mix; GPT-2 and OpenWebText2 removed it for that reason). A host matches a domain or any subdomain of it.
DEFAULT_BLOCKED_DOMAINS = [
    "reddit.com", "redd.it", "redditmedia.com", "reddituploads.com", "redditstatic.com",
    "imgur.com", "gfycat.com", "giphy.com", "tenor.com", "gyazo.com", "flickr.com", "photobucket.com",
    "tinypic.com", "imageshack.us", "instagram.com", "pinterest.com",
    "youtube.com", "youtu.be", "vimeo.com", "dailymotion.com", "twitch.tv", "streamable.com", "liveleak.com",
    "wikipedia.org", "wikimedia.org",
]

# Path endings of targets that are not HTML pages (images, video, audio, documents, archives, binaries).
DEFAULT_NON_HTML_EXTENSIONS = [
    ".jpg", ".jpeg", ".png", ".gif", ".gifv", ".webp", ".bmp", ".svg", ".tif", ".tiff", ".ico", ".heic",
    ".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v", ".flv", ".wmv", ".mp3", ".wav", ".ogg", ".flac", ".m4a",
    ".pdf", ".doc", ".docx", ".ppt", ".pptx", ".xls", ".xlsx", ".epub", ".zip", ".gz", ".tgz", ".tar", ".rar", ".7z",
    ".exe", ".dmg", ".apk", ".iso", ".bin", ".torrent",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters left as they are in a path or query; everything else (spaces, raw non-ASCII) is percent-encoded.
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


def normalize_url(url: Any) -> str | None:
    """The canonical form of an http(s) URL, or None when it is not one (relative, other scheme, no host, bad port).

    Lower-cases scheme and host, converts the host to IDNA, drops user info, default ports, the fragment and
    tracking parameters, makes an empty path "/", and percent-encodes unsafe characters. Angle brackets around the
    URL (as some WARC writers emit) and HTML escapes (as old Reddit dumps hold) are undone first.
    """
    parts = split_url(url)
    return parts[0] if parts else None


def split_url(url: Any) -> tuple[str, str, str] | None:
    """(normalize_url's result, its host, its path), or None: the parts the link rules test, without splitting the
    normalized URL again."""
    if not isinstance(url, str):
        return None
    url = url.strip().strip("<>").strip()
    if "&amp;" in url:
        url = html.unescape(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = normalize_host(parts.hostname)
    if host is None:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = quote(parts.path or "/", safe=_SAFE_PATH)
    kept = [p for p in parts.query.split("&") if p and not _is_tracking(p.split("=", 1)[0])]
    query = quote("&".join(kept), safe=_SAFE_QUERY)
    return urlunsplit((scheme, netloc, path, query, "")), host, path


def normalize_host(host: str) -> str | None:
    """Lower-case, IDNA-encoded host without a trailing dot; None when it cannot be encoded."""
    host = host.strip().rstrip(".").lower()
    if not host:
        return None
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def url_host(url: str) -> str:
    """The host of a normalized URL (no port)."""
    return urlsplit(url).hostname or ""


def _is_tracking(name: str) -> bool:
    name = name.lower()
    return name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES)


def host_in(host: str, domains: frozenset[str]) -> bool:
    """True when `host` is one of `domains` or a subdomain of one."""
    labels = host.split(".")
    return any(".".join(labels[i:]) in domains for i in range(len(labels)))


def has_extension(path: str, extensions: frozenset[str]) -> bool:
    """True when a URL path ends in one of `extensions` (lower-case, with the dot)."""
    return posixpath.splitext(path)[1].lower() in extensions


@dataclasses.dataclass
class LinkRules:
    """Which submissions give links, and how the link table is built from them.

    `min_score`: a link needs a score of at least this. `score_aggregate`: "max" keeps a link when any one of its
    submissions reached `min_score` (WebText); "sum" adds the scores of all its submissions (OpenWebText2).
    `drop_nsfw`: drop submissions marked over_18. `blocked_domains`: hosts (and their subdomains) never linked.
    `non_html_extensions`: path endings of non-HTML targets. `since`/`until`: keep submissions created in
    [since, until) (ISO dates, UTC). `buckets`: the link table is split into this many files by a hash of the host,
    so one file holds every link of a host (the fetcher's unit of politeness); raise it when one bucket's
    submissions would not fit in a worker's memory.
    """

    min_score: int = dataclasses.field(default=3, metadata=option("a link needs this score"))
    score_aggregate: Literal["max", "sum"] = dataclasses.field(default="max", metadata=option(
        "max: any one submission reaches the score (WebText); sum: scores of all submissions of the URL added "
        "(OpenWebText2)"))
    drop_nsfw: bool = dataclasses.field(default=False, metadata=option("drop submissions marked over_18"))
    blocked_domains: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_BLOCKED_DOMAINS))
    non_html_extensions: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_NON_HTML_EXTENSIONS))
    since: str | None = dataclasses.field(default=None, metadata=option(
        "only submissions created at or after this ISO date (UTC)"))
    until: str | None = dataclasses.field(default=None, metadata=option(
        "only submissions created before this ISO date (UTC)"))
    buckets: int = dataclasses.field(default=16, metadata=option("link files, by host hash"))
    max_line_bytes: int = pushshift.MAX_LINE_BYTES  # a longer dump line is reported and skipped unread

    def validate(self) -> None:
        if self.max_line_bytes < 1:
            raise ValueError(f"max_line_bytes: must be positive, got {self.max_line_bytes}")
        if self.buckets < 1:
            raise ValueError(f"buckets: must be at least 1, got {self.buckets}")
        for key in ("since", "until"):
            value = getattr(self, key)
            if value is not None and parse_time(value) is None:
                raise ValueError(f"{key}: not an ISO date or date-time: {value!r}")
        bad = [e for e in self.non_html_extensions if not e.startswith(".")]
        if bad:
            raise ValueError(f"non_html_extensions: each must start with a dot, got {bad}")


class LinkFields(TypedDict, total=False):
    """The submission fields that LinkFilter.check and links.candidate_row read. A dump reader that decodes only
    these (formats.pushshift.read_submissions) skips the rest of a record (selftext, media, previews, ...) unbuilt."""

    id: Any
    score: Any
    is_self: Any
    over_18: Any
    created_utc: Any
    url: Any
    permalink: Any
    subreddit: Any


class LinkFilter:
    """Apply LinkRules to submission records (Pushshift lines or Reddit API objects as dicts)."""

    def __init__(self, rules: LinkRules):
        self.rules = rules
        self.blocked = frozenset(normalize_host(d) or d for d in rules.blocked_domains)
        self.extensions = frozenset(e.lower() for e in rules.non_html_extensions)
        self.since = parse_time(rules.since)
        self.until = parse_time(rules.until)

    def check(self, record: dict[str, Any]) -> tuple[str | None, str | None]:
        """(normalized URL, None) when the submission gives a candidate link, else (None, drop reason)."""
        score = score_of(record)
        if self.rules.score_aggregate == "max" and score < self.rules.min_score:
            return None, "low_score"  # under "max" no other submission can lift this one's score
        if _truthy(record.get("is_self")):
            return None, "self_post"
        if self.rules.drop_nsfw and _truthy(record.get("over_18")):
            return None, "nsfw"
        created = created_time(record)
        if (self.since and (created is None or created < self.since)) or (
                self.until and (created is None or created >= self.until)):
            return None, "out_of_time_range"
        parts = split_url(record.get("url"))
        if parts is None:
            return None, "bad_url"
        url, host, path = parts
        if host_in(host, self.blocked):
            return None, "blocked_domain"
        if has_extension(path, self.extensions):
            return None, "non_html"
        return url, None


def created_time(record: dict[str, Any]) -> datetime | None:
    """The submission's creation time (created_utc as epoch seconds, number or string)."""
    value = record.get("created_utc")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return parse_time(value)
    return parse_time(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_INT64 = 2**63


def score_of(record: dict[str, Any]) -> int:
    """The submission's score as an integer; a missing or unreadable score counts as 0. A score outside the link
    table's 64-bit integers (2**63, 1e300) raises ValueError: it is damage, not a score."""
    value = record.get("score")
    try:
        score = int(value) if isinstance(value, int) else int(float(value))
    except (TypeError, ValueError, OverflowError):
        return 0
    if not -_INT64 <= score < _INT64:
        raise ValueError(f"score {value!r} is out of range")
    return score


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")
