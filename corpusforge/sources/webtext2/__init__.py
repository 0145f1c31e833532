"""WebText2: the pages Reddit submissions with a score of at least 3 link to, fetched politely and extracted.

Three steps, each a library call the CLI and the `webtext2` recipe stage share:
  1. links:   Pushshift dumps (`pushshift.collect`) or Reddit's API via praw (`reddit.collect`) -> the link table
              `<links_dir>/links-*.parquet` (schemas/links.schema.json), filtered by `urls.LinkRules`.
  2. fetch:   link table -> WARC files under `<output>/warc/` (`fetch.run`), politely and resumably.
  3. extract: those WARCs -> document shards in `<output>` through the CommonCrawl path
              (`commoncrawl.run`, source "webtext2"), with the link's Reddit score and subreddit as columns.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

from corpusforge import runtime, storage
from corpusforge.options import narrow, option, setting
from corpusforge.sources.webtext2.fetch import FetchConfig
from corpusforge.sources.webtext2.reddit import RedditConfig
from corpusforge.sources.webtext2.urls import LinkRules

SOURCE = "webtext2"


def extract_config(extract: dict[str, Any], inputs: list[str], output: str):
    """The CommonCrawlConfig for extracting fetched WARCs: `extract` holds its settings (languages,
    min_lang_score, mode, timeout_s, ...), checked like a recipe table (errors name the key)."""
    from corpusforge import recipe
    from corpusforge.sources.commoncrawl import CommonCrawlConfig

    fixed = sorted({"inputs", "output", "base_url", "limit_files"} & set(extract))
    if fixed:
        raise ValueError(f"extract: {fixed} are set by the webtext2 stage itself")
    return recipe.from_dict(CommonCrawlConfig, {**extract, "inputs": inputs, "output": output}, "extract")


@dataclasses.dataclass
class WebText2Config:
    """`[webtext2]`: where the links come from (`pushshift` dumps or a `[webtext2.reddit]` table), the link
    rules, the fetcher and the extraction settings. Outputs: `<output>/links/` (link table), `<output>/warc/`
    (WARCs and fetch logs) and the document shards in `<output>`, a local folder or an object store's
    (`s3://bucket/webtext2`). `sample_site`: serve this site folder
    (corpusforge.formats.site; the sample part "reddit" writes one) on loopback during the fetch and resolve each
    of its hosts to it."""

    output: str = "build/corpus/webtext2"
    pushshift: list[str] = dataclasses.field(default_factory=list)
    reddit: RedditConfig | None = None
    links: LinkRules = dataclasses.field(default_factory=LinkRules)
    fetch: FetchConfig = dataclasses.field(default_factory=FetchConfig)
    extract: dict[str, Any] = dataclasses.field(default_factory=dict)
    sample_site: str | None = None

    def validate(self) -> None:
        if bool(self.pushshift) == (self.reddit is not None):
            raise ValueError("give exactly one link source: `pushshift = [dump paths or globs]` or a "
                             "[webtext2.reddit] table")
        extract_config(self.extract, ["<fetched WARCs>"], self.output)

    def links_dir(self) -> Any:
        return storage.join(self.output, "links")


def collect_links(config: WebText2Config, ctx: runtime.RunContext,
                  links_dir: str | Path | None = None) -> runtime.StageSummary:
    """Step 1: the configured source -> the link table in `links_dir` (default `config.links_dir()`)."""
    from corpusforge.sources.webtext2 import pushshift, reddit

    links_dir = config.links_dir() if links_dir is None else links_dir
    if config.reddit is not None:
        return reddit.collect(config.reddit, links_dir, config.links, ctx)
    return pushshift.collect(config.pushshift, links_dir, config.links, ctx)


def _fetch_and_extract(links_dir: str | Path, output: str | Path, fetch_config: FetchConfig,
                       extract: dict[str, Any] | None,
                       ctx: runtime.RunContext) -> tuple[runtime.StageSummary, list[runtime.FileReport]]:
    """Steps 2 and 3, the stage's folder left unfinished: the extraction summary (with the fetch summary under
    extra["fetch"]) and the extraction reports."""
    from corpusforge.sources import commoncrawl
    from corpusforge.sources.webtext2 import fetch

    cc_config = extract_config(extract or {}, [str(storage.join(output, "warc", "*.warc.gz"))], str(output))
    with ctx.dask():
        fetched = fetch.run(links_dir, output, fetch_config, ctx)
        summary, reports = commoncrawl.extract_all(cc_config, ctx, source=SOURCE,
                                                   extra_columns_for=fetch.extra_columns, finish=False)
    summary.stage = SOURCE
    summary.extra["fetch"] = fetched.to_json()
    return summary, reports


def fetch_and_extract(links_dir: str | Path, output: str | Path, fetch_config: FetchConfig,
                      extract: dict[str, Any] | None, ctx: runtime.RunContext) -> runtime.StageSummary:
    """Steps 2 and 3: fetch the link table into `output/warc/`, then extract the WARCs into document shards in
    `output`. Returns the extraction summary, with the fetch summary under extra["fetch"] (also in
    `output/_summary.json`)."""
    summary, reports = _fetch_and_extract(links_dir, output, fetch_config, extract, ctx)
    return runtime.finish_stage(output, summary, runtime.errors_of(reports), console=ctx.console)


def run(config: WebText2Config, ctx: runtime.RunContext) -> runtime.StageSummary:
    """The whole stage: links, fetch, extract (on one Dask client)."""
    with ctx.dask():
        link_summary = collect_links(config, ctx)
        with _sample_site(config.sample_site) as (resolve, captured):
            fetch_config = dataclasses.replace(config.fetch, resolve={**config.fetch.resolve, **resolve},
                                               capture_time=config.fetch.capture_time or captured)
            summary, reports = _fetch_and_extract(config.links_dir(), config.output, fetch_config, config.extract,
                                                  ctx)
    summary.extra["links"] = link_summary.to_json()
    return runtime.finish_stage(config.output, summary, runtime.errors_of(reports), console=ctx.console)


# ------------------------------------------------------------------------------------------- commands of their own
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
    """`corpusforge webtext2 links`: `collect_links` into the command's folder."""
    links = dataclasses.replace(command.links, blocked_domains=command.links.blocked_domains + command.block_domain)
    reddit = dataclasses.replace(command.reddit, subreddits=command.subreddit or command.reddit.subreddits)
    config = WebText2Config(pushshift=command.pushshift, reddit=reddit if command.api else None, links=links)
    return collect_links(config, ctx, command.output)


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
    """`corpusforge webtext2 fetch`: `fetch_and_extract`; False when an input or a fetch failed and the
    context's `fail_on_error` is set."""
    summary = fetch_and_extract(command.links_dir, command.output, narrow(command, FetchConfig),
                                         command.extract, ctx)
    return not (ctx.fail_on_error and (summary.errors or summary.extra["fetch"]["errors"]))


@contextlib.contextmanager
def _sample_site(site: str | None):
    """Serve a site folder (corpusforge.formats.site) on loopback for the fetch; yields the host overrides that
    point each of its hosts at the server, and the snapshot's time as the captures' WARC-Date."""
    if site is None:
        yield {}, None
        return
    from corpusforge.formats import site as site_folder
    from corpusforge.formats.warc_write import warc_date

    with site_folder.serve(site) as address:
        yield {host: address for host in site_folder.hosts(site)}, warc_date(site_folder.SNAPSHOT)
