"""The source steps that are commands of their own, apart from a recipe's stages: `corpusforge webtext2 links`,
`webtext2 fetch` and `wikipedia download`. Each is a config (its fields are the command's options) and a call that
takes it."""

from __future__ import annotations

import dataclasses
from typing import Any

from corpusforge import runtime
from corpusforge.options import narrow, option, setting
from corpusforge.sources import webtext2, wikipedia
from corpusforge.sources.webtext2.fetch import FetchConfig
from corpusforge.sources.webtext2.reddit import RedditConfig
from corpusforge.sources.webtext2.urls import LinkRules

_OUTPUT = "--output -o"


@dataclasses.dataclass
class LinksCommand:
    """`corpusforge webtext2 links (--reddit | --pushshift FILE...) --output LINKS_DIR`: the link table from Reddit's
    API (`reddit`, its listings from `subreddit`) or Pushshift dumps, by the `links` rules plus `block_domain`."""

    output: str = dataclasses.field(metadata=option("link table folder (LINKS_DIR)", flag=_OUTPUT))
    api: bool = setting(False, "read Reddit's API with praw; credentials from praw_* environment variables or "
                               "praw.ini", flag="--reddit", action="store_true")
    pushshift: list[str] = setting([], "Pushshift dumps (RS_YYYY-MM.zst), globs", metavar="FILE")
    block_domain: list[str] = setting([], "block this domain and its subdomains too (repeatable; added to the "
                                          "default list)", action="append", metavar="DOMAIN")
    subreddit: list[str] = setting([], "--reddit: a subreddit to read (repeatable; default all)", action="append")
    links: LinkRules = dataclasses.field(default_factory=LinkRules)
    reddit: RedditConfig = dataclasses.field(default_factory=RedditConfig)

    def validate(self) -> None:
        if self.api == bool(self.pushshift):
            raise ValueError("give one link source: --reddit or --pushshift FILE...")


def links_command(command: LinksCommand, ctx: runtime.RunContext) -> runtime.StageSummary:
    """`corpusforge webtext2 links`: `webtext2.collect_links` into the command's folder."""
    links = dataclasses.replace(command.links, blocked_domains=command.links.blocked_domains + command.block_domain)
    reddit = dataclasses.replace(command.reddit, subreddits=command.subreddit or command.reddit.subreddits)
    config = webtext2.WebText2Config(pushshift=command.pushshift, reddit=reddit if command.api else None, links=links)
    return webtext2.collect_links(config, ctx, command.output)


@dataclasses.dataclass(kw_only=True)
class FetchCommand(FetchConfig):
    """`corpusforge webtext2 fetch LINKS_DIR --output DIR`: the fetcher's settings, and `extract` (CommonCrawlConfig
    settings) for the extraction of what it fetched."""

    links_dir: str = dataclasses.field(metadata=option("folder written by `corpusforge webtext2 links`",
                                                       positional=True))
    output: str = dataclasses.field(metadata=option("shards here, WARCs and fetch logs in OUTPUT/warc/",
                                                    flag=_OUTPUT))
    extract: dict[str, Any] = dataclasses.field(default_factory=dict)


def fetch_command(command: FetchCommand, ctx: runtime.RunContext) -> bool:
    """`corpusforge webtext2 fetch`: `webtext2.fetch_and_extract`; False when an input or a fetch failed and the
    context's `fail_on_error` is set."""
    summary = webtext2.fetch_and_extract(command.links_dir, command.output, narrow(command, FetchConfig),
                                         command.extract, ctx)
    return not (ctx.fail_on_error and (summary.errors or summary.extra["fetch"]["errors"]))


@dataclasses.dataclass
class DownloadCommand:
    """`corpusforge wikipedia download NAME --output DIR`: see `wikipedia.download`."""

    name: str = dataclasses.field(metadata=option(
        "a wiki (enwiki), a wiki and date (enwiki-20240601) or a dump file name", positional=True, metavar="NAME"))
    output: str = dataclasses.field(metadata=option("folder the files are written to", flag=_OUTPUT))
    base_url: str = setting(wikipedia.DUMPS_URL, "the dump server")


def download_command(command: DownloadCommand) -> None:
    """`corpusforge wikipedia download`: `wikipedia.download`."""
    wikipedia.download(command.name, command.output, base_url=command.base_url)
