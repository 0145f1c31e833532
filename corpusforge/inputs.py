"""The one input resolver every source uses: what files a list of paths, globs, folders, URLs and listings names.

One rule for a missing input: a spec that names nothing (no such path, a glob that matches no file, a folder with no
file the source reads) stops the stage before any work with a `MissingInput` naming it, so a typo never reads as
an empty but successful run.
"""

from __future__ import annotations

import glob as globlib
import os
from pathlib import Path

from corpusforge.errors import UserError

LISTINGS = (".paths", ".paths.gz", "paths.txt", "paths.txt.gz")  # CommonCrawl's lists of WARC paths
MAX_LISTING_LINE = 4096  # characters: a WARC path is about 150
_WEB = ("http", "https")


class MissingInput(UserError, FileNotFoundError):
    """An input spec that names no file."""


def resolve(specs: list[str], *, what: str = "input", folder_suffixes: tuple[str, ...] = (),
            recursive: bool = False, folder_error: str | None = None, base_url: str | None = None) -> list[str]:
    """Paths and URLs of the files `specs` name, in spec order (each glob and folder sorted), without repeats.

    - a path or URL: itself (a local path or an object on a store must exist; a web URL is taken as given);
    - a glob, local or remote (`s3://`, `https://`... through fsspec): the files it matches;
    - a folder, local or a store's prefix (`s3://bucket/books/`): its files ending in `folder_suffixes` (all of
      its subfolders with `recursive`); a source that reads no folders gives none, and a folder is refused with
      `folder_error` (formatted with `spec`);
    - a listing (`*.paths`, `*.paths.gz`), when `base_url` is given: its lines, relative ones joined to `base_url`.

    `what` names the files in the error for a spec that names none (`no such {what}`, `no {what} matches`).
    """
    from corpusforge import storage

    storage.check_protocols(specs)  # a URL scheme with no backend installed: one line, before any request
    out: list[str] = []
    for spec in specs:
        name = spec.rstrip("/").rsplit("/", 1)[-1]
        if base_url is not None and name.endswith(LISTINGS):
            out.extend(_listing(spec, base_url))
        elif globlib.has_magic(spec):
            found = _remote_glob(spec) if "://" in spec else sorted(
                p for p in globlib.glob(spec, recursive=recursive) if os.path.isfile(p))
            if not found:
                raise MissingInput(f"no {what} matches {spec!r}")
            out.extend(found)
        elif spec.split("://", 1)[0] in _WEB:
            out.append(spec)
        elif storage.is_dir(spec):
            if not folder_suffixes:
                raise MissingInput((folder_error or "{spec} is a folder; give the files in it").format(spec=spec))
            found = [f for f in _folder_files(spec, recursive) if f.endswith(folder_suffixes)]
            if not found:
                raise MissingInput(f"no {what} in the folder {spec}")
            out.extend(found)
        elif not storage.exists(spec):
            raise MissingInput(f"no such {what}: {spec}")
        else:
            out.append(spec)
    return list(dict.fromkeys(out))


def _folder_files(folder: str, recursive: bool) -> list[str]:
    """The files in a local folder or a store's prefix (and in their subfolders with `recursive`), sorted."""
    from corpusforge import storage

    if not storage.is_url(folder):
        files = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
        return sorted(str(p) for p in files if p.is_file())
    fs, path = storage.filesystem(folder)
    protocol = folder.split("://", 1)[0]
    with storage.store_errors("list", folder):
        return sorted(f"{protocol}://{p}" for p in fs.find(path, maxdepth=None if recursive else 1))


def _listing(spec: str, base_url: str) -> list[str]:
    """The paths a listing names, relative ones joined to `base_url`; a listing that cannot be read or holds a line
    longer than `MAX_LISTING_LINE` is a MissingInput naming it."""
    import fsspec

    out, number = [], 0
    try:
        with fsspec.open(spec, "rt", compression="infer") as fh:
            while line := fh.readline(MAX_LISTING_LINE + 1):
                number += 1
                if len(line) > MAX_LISTING_LINE:
                    raise MissingInput(f"listing {spec}: line {number} is longer than {MAX_LISTING_LINE} "
                                       "characters; not a list of paths")
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(line if "://" in line or line.startswith("/") else base_url.rstrip("/") + "/" + line)
    except MissingInput:
        raise
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # a missing or damaged listing names no files
        raise MissingInput(f"listing {spec}: cannot read it: {type(exc).__name__}: {exc}") from None
    return out


def _remote_glob(spec: str) -> list[str]:
    import fsspec

    fs, _, _ = fsspec.get_fs_token_paths(spec)
    protocol = spec.split("://", 1)[0]
    # s3/gcs globs return bare "bucket/key" paths, http globs return full URLs
    return [p if "://" in p else f"{protocol}://{p}" for p in sorted(fs.glob(spec))]
