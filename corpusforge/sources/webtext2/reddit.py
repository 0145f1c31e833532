"""Candidate links from Reddit's API with praw: the listings of some subreddits (or `all`), page by page.

Credentials never pass through corpusforge: praw reads them itself from the environment (`praw_client_id`,
`praw_client_secret`, and `praw_username` / `praw_password` for a script app) or from a `praw.ini` site, so they
cannot end up in a recipe, a log, a summary or an output. Reddit's rate-limit headers are followed by prawcore; a
429 is waited out for its Retry-After (then retried), 5xx answers are retried with backoff. Each page of a listing is
saved as a candidate unit together with the `after` token of the next page, so an interrupted collection resumes
at the page where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

from corpusforge import runtime, storage
from corpusforge.errors import UserError
from corpusforge.options import option
from corpusforge.sources.webtext2 import links
from corpusforge.sources.webtext2.urls import LinkFilter, LinkRules

PAGE_SIZE = 100  # the most Reddit returns per listing request
USER_AGENT = "python:corpusforge-webtext2:0.1 (link collection for a research corpus)"
TIME_LISTINGS = ("top", "controversial")


@dataclasses.dataclass
class RedditConfig:
    """`[webtext2.reddit]` / `corpusforge webtext2 links --reddit`: which listings to read.

    `limit`: submissions per subreddit (Reddit serves about 1000 per listing). `site`: a praw.ini section with
    the credentials (default: praw's DEFAULT section plus the `praw_*` environment variables). `user_agent`:
    Reddit asks for "<platform>:<app id>:<version> (by /u/<your username>)". `oauth_url` and
    `reddit_url` point praw at another server (a proxy, or a local test server); normally leave them unset.
    """

    subreddits: list[str] = dataclasses.field(default_factory=lambda: ["all"])
    listing: Literal["top", "controversial", "new", "hot", "rising"] = dataclasses.field(
        default="top", metadata=option("--reddit: listing"))
    time_filter: Literal["all", "year", "month", "week", "day", "hour"] = dataclasses.field(
        default="all", metadata=option("--reddit: time range of top/controversial"))
    limit: int | None = dataclasses.field(default=1000, metadata=option("--reddit: submissions per subreddit"))
    site: str | None = dataclasses.field(default=None, metadata=option(
        "--reddit: praw.ini section holding the credentials"))
    user_agent: str = USER_AGENT
    oauth_url: str | None = dataclasses.field(default=None, metadata=option(
        "--reddit: API server (a proxy or test server)"))
    reddit_url: str | None = dataclasses.field(default=None, metadata=option(
        "--reddit: token server (a proxy or test server)"))
    retries: int = 5
    backoff_s: float = 2.0
    max_retry_after_s: float = 600.0

    def validate(self) -> None:
        if not self.subreddits:
            raise ValueError("subreddits: give at least one subreddit (or \"all\")")
        bad = [s for s in self.subreddits if not s or "/" in s or " " in s]
        if bad:
            raise ValueError(f"subreddits: names without slashes or spaces (e.g. \"science\"), got {bad}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit: must be at least 1, got {self.limit}")


class CredentialsMissing(UserError, RuntimeError):
    """praw found no Reddit app credentials."""


def connect(config: RedditConfig):
    """A praw.Reddit whose credentials come from the environment or praw.ini (never from corpusforge)."""
    import praw
    from praw.exceptions import MissingRequiredAttributeException

    settings: dict[str, Any] = {"user_agent": config.user_agent, "check_for_updates": False,
                                "check_for_async": False}
    if config.oauth_url:
        settings["oauth_url"] = config.oauth_url
    if config.reddit_url:
        settings["reddit_url"] = config.reddit_url
    try:
        reddit = praw.Reddit(config.site, **settings)
    except MissingRequiredAttributeException:
        raise CredentialsMissing(
            "no Reddit credentials: set praw_client_id and praw_client_secret (plus praw_username and "
            "praw_password for a script app) in the environment, or name a praw.ini site with --site") from None
    if not reddit.config.client_secret:
        raise CredentialsMissing("no Reddit client secret: set praw_client_secret or put it in praw.ini")
    return reddit


def submission_record(submission: Any) -> dict[str, Any]:
    """The fields of a praw Submission that the link rules and the link table use, as a plain dict."""
    fields = vars(submission)
    return {"id": fields.get("id"), "url": fields.get("url"), "score": fields.get("score"),
            "is_self": fields.get("is_self"), "over_18": fields.get("over_18"),
            "permalink": fields.get("permalink"), "created_utc": fields.get("created_utc"),
            "subreddit": str(fields.get("subreddit") or "") or None}


class Collector:
    """Read listings page by page into candidate units under `unit_root`."""

    def __init__(self, config: RedditConfig, rules: LinkRules, unit_root: str | Path, console: Any = None):
        self.config = config
        self.filter = LinkFilter(rules)
        self.rules = rules
        self.unit_root = unit_root
        self.console = console
        self._reddit = None

    @property
    def reddit(self):
        if self._reddit is None:  # connect lazily: a finished collection resumes without credentials
            self._reddit = connect(self.config)
        return self._reddit

    def listing_origin(self, subreddit: str) -> str:
        query = f"?t={self.config.time_filter}" if self.config.listing in TIME_LISTINGS else ""
        return f"reddit:/r/{subreddit}/{self.config.listing}{query}"

    def collect(self) -> list[runtime.FileReport]:
        """Every page of every configured listing, resumed where an earlier run stopped; one report per page.
        A listing that fails (a private or banned subreddit, Reddit down) is reported and the others go on."""
        reports = []
        for subreddit in self.config.subreddits:
            origin = self.listing_origin(subreddit)
            try:
                self._listing(subreddit, origin, reports)
            except CredentialsMissing:
                raise
            except Exception as exc:
                failed = runtime.FileReport(input=origin)
                failed.error(f"listing failed: {type(exc).__name__}: {exc}"[:300], stage="reddit")
                reports.append(failed)
        return reports

    def _listing(self, subreddit: str, origin: str, reports: list[runtime.FileReport]) -> None:
        """Read one listing page by page, appending a report per page to `reports` as each page is saved."""
        from prawcore.exceptions import ServerError, TooManyRequests

        after, seen, page = None, 0, 0
        key = runtime.output_name(origin, "")
        while self.config.limit is None or seen < self.config.limit:
            unit_dir = storage.join(self.unit_root, f"{key}-p{page:05d}")
            item = f"{origin}#page={page}"
            done = links.load_unit(unit_dir, item)
            if done is None:
                limit = PAGE_SIZE if self.config.limit is None else min(PAGE_SIZE, self.config.limit - seen)
                params: dict[str, Any] = {"limit": limit}
                if self.config.listing in TIME_LISTINGS:
                    params["t"] = self.config.time_filter
                if after:
                    params["after"] = after
                for attempt in range(self.config.retries + 1):
                    try:
                        listing = self.reddit.get(f"r/{subreddit}/{self.config.listing}", params=params)
                        break
                    except TooManyRequests as exc:
                        wait = float(exc.retry_after or self.config.backoff_s * 2**attempt)
                        if attempt == self.config.retries or wait > self.config.max_retry_after_s:
                            raise
                        self._say(f"{origin}: rate limited (429), waiting {wait:g}s as Retry-After asks")
                        time.sleep(wait)
                    except ServerError:
                        if attempt == self.config.retries:
                            raise
                        time.sleep(self.config.backoff_s * 2**attempt)
                report = self._save_page(unit_dir, item, listing, origin, page)
                next_after = listing.after
                count = report.counts.get("submissions", 0)
            else:
                report, saved = done
                next_after, count = saved.get("after"), saved.get("count", 0)
            reports.append(report)
            seen += count
            page += 1
            self._say(f"{origin}: page {page}, {seen:,} submissions")
            if not next_after or count == 0:
                break
            after = next_after

    def _save_page(self, unit_dir: str | Path, item: str, listing: Any, origin: str, page: int) -> runtime.FileReport:
        report = runtime.FileReport(input=item, output=str(unit_dir))
        with links.UnitWriter(unit_dir, self.rules.buckets) as writer:
            for submission in listing.children:
                record = submission_record(submission)
                report.count("submissions")
                url, reason = self.filter.check(record)
                if url is None:
                    report.count(f"dropped_{reason}")
                    continue
                writer.add(links.candidate_row(record, url, origin, None))
                report.count("candidates")
            writer.finish(report, after=listing.after, count=len(listing.children), page=page)
        return report

    def _say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message, highlight=False)
        else:
            runtime.log(message)


def collect(config: RedditConfig, links_dir: str | Path, rules: LinkRules,
            ctx: runtime.RunContext) -> runtime.StageSummary:
    """Reddit listings -> the link table in `links_dir` (pages collected here, buckets reduced on Dask)."""
    t0 = time.perf_counter()
    unit_root = links.candidates_dir(links_dir, rules)
    reports = Collector(config, rules, unit_root, console=ctx.console).collect()
    summary = runtime.StageSummary(stage="webtext2 links")
    for report in reports:
        summary.add(report)
    summary.seconds = time.perf_counter() - t0
    summary.extra["reddit"] = {"subreddits": config.subreddits, "listing": config.listing,
                               "time_filter": config.time_filter, "limit": config.limit}
    with ctx.dask() as client:
        return links.build_link_table([r.output for r in reports if r.output], links_dir, rules, summary,
                                      [e for r in reports for e in r.errors], client=client, console=ctx.console)
