"""Where outputs live: a local path or an fsspec URL (`s3://`, `gs://`, `hf://`...). The few operations stages need
on either, so that workers on different machines need no shared file system.

Publishing is atomic on both: a local file is written beside its final name and renamed; an object is uploaded in
one request (or one multipart upload) from a local temporary file, and object stores make an object visible only
when its upload completes, so no reader sees part of one. A folder is finished when its stage's `_stage.json` says
so (runtime.finish_stage), the completion marker where a store cannot rename a folder.

Credentials come from each store's usual environment and config files (AWS_* / ~/.aws for s3fs, GOOGLE_* / gcloud
for gcsfs); nothing here reads, stores or prints them, and errors are reported without them.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from corpusforge.errors import UserError

PathLike = str | os.PathLike


def is_url(path: PathLike) -> bool:
    """True for an fsspec URL (`scheme://...`), false for a local path."""
    return "://" in str(path)


def join(base: PathLike, *parts: str) -> Any:
    """`base / parts...`: a Path for a local base, a URL string for a remote one (pathlib would fold `s3://` to
    `s3:/`)."""
    if not is_url(base):
        return Path(base, *parts)
    return "/".join([str(base).rstrip("/"), *(p.strip("/") for p in parts)])


def parent(path: PathLike) -> Any:
    return str(path).rstrip("/").rsplit("/", 1)[0] if is_url(path) else Path(path).parent


def name(path: PathLike) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem for `url` and the path in it."""
    import fsspec

    return fsspec.core.url_to_fs(url)


class StorageError(UserError, OSError):
    """An object store refused or failed an operation: a missing bucket, missing credentials, a lost connection."""


def _explain(err: BaseException, what: str, url: str) -> StorageError:
    """One line for a store's error, naming the usual cause (the store's message never holds the credentials)."""
    kind = type(err).__name__
    text = str(err).splitlines()[0] if str(err) else ""
    if "NoCredentials" in kind or "credentials" in text.lower():
        hint = "no credentials found (set them the store's usual way, e.g. AWS_ACCESS_KEY_ID/~/.aws for s3://)"
    elif "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        hint = f"the bucket {url.split('://', 1)[1].split('/', 1)[0]} does not exist"
    elif isinstance(err, PermissionError) or "AccessDenied" in text or "InvalidAccessKeyId" in text:
        hint = f"access denied ({text})"
    elif isinstance(err, FileNotFoundError):
        hint = "not found"
    else:
        hint = f"{kind}: {text}" if text else kind
    return StorageError(f"cannot {what} {url}: {hint}")


@contextlib.contextmanager
def store_errors(what: str, url: PathLike) -> Iterator[None]:
    """Turn a remote store's failure inside the block into a one-line StorageError about `url`."""
    if not is_url(url):
        yield
        return
    try:
        yield
    except StorageError:
        raise
    except Exception as err:  # botocore, aiohttp and fsspec raise many kinds; each becomes one line
        raise _explain(err, what, str(url)) from None


def arrow_path(path: PathLike) -> tuple[str, Any]:
    """(path, filesystem) for pyarrow's readers: `p, fs = arrow_path(x); pq.ParquetFile(p, filesystem=fs)`. A local
    path comes back with no filesystem; a URL as its path in the fsspec filesystem, which pyarrow wraps (any store
    fsspec knows, with its usual credentials)."""
    if not is_url(path):
        return str(path), None
    return filesystem(str(path))[::-1]


def size(path: PathLike) -> int:
    """Bytes of a local file or object."""
    if not is_url(path):
        return os.path.getsize(path)
    with store_errors("read", path):
        fs, p = filesystem(str(path))
        return int(fs.size(p))


def identity(path: PathLike) -> dict[str, Any]:
    """How to tell that a file or object changed without reading it: size and modification time (nanoseconds) of a
    local file; size and ETag or modification time of an object; `missing` when it is gone."""
    try:
        if not is_url(path):
            st = os.stat(path)
            return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        fs, p = filesystem(str(path))
        info = fs.info(p)
        return {"size": info.get("size"), "etag": info.get("ETag") or info.get("etag"),
                "mtime": str(info.get("LastModified") or info.get("mtime") or info.get("updated") or "")}
    except (OSError, ValueError):
        return {"missing": True}


def is_dir(path: PathLike) -> bool:
    """Whether `path` is a folder (on a store: a prefix with objects under it)."""
    if not is_url(path):
        return Path(path).is_dir()
    with store_errors("list", path):
        fs, p = filesystem(str(path))
        return bool(fs.isdir(p))


def exists(path: PathLike) -> bool:
    if not is_url(path):
        return Path(path).exists()
    with store_errors("read", path):
        fs, p = filesystem(str(path))
        return fs.exists(p)


def open_file(path: PathLike, mode: str = "rb", *, block_size: int | None = None) -> IO:
    """Open a local file or a remote object for reading (for writing, use `atomic_path`). A remote binary file is
    an io.BufferedReader like a local one, so line reads take a length limit (`readline(limit)`). `block_size`:
    how much a remote read fetches ahead of what it asks for (the store's default, tens of MB, suits reading from
    the start; seeking reads at scattered offsets want little)."""
    if not is_url(path):
        return open(path, mode)
    with store_errors("read", path):
        fs, p = filesystem(str(path))
        raw = fs.open(p, mode, **({"block_size": block_size} if block_size else {}))
        return io.BufferedReader(raw) if mode == "rb" else raw


def read_text(path: PathLike) -> str:
    """The text of a local file or object; FileNotFoundError when it is not there."""
    if not is_url(path):
        return Path(path).read_text(encoding="utf-8")
    fs, p = filesystem(str(path))
    try:
        with fs.open(p, "rb") as fh:
            return fh.read().decode("utf-8")
    except FileNotFoundError:
        raise
    except Exception as err:
        raise _explain(err, "read", str(path)) from None


def listing(folder: PathLike, pattern: str = "*") -> list[str]:
    """The files in `folder` matching `pattern`, sorted, as paths or full URLs."""
    if not is_url(folder):
        return sorted(str(p) for p in Path(folder).glob(pattern))
    with store_errors("list", folder):
        fs, p = filesystem(str(folder))
        protocol = str(folder).split("://", 1)[0]
        return sorted(f"{protocol}://{q}" for q in fs.glob(f"{p.rstrip('/')}/{pattern}"))


def makedirs(folder: PathLike) -> None:
    """Create a local folder (object stores have none to make)."""
    if not is_url(folder):
        Path(folder).mkdir(parents=True, exist_ok=True)


def remove(path: PathLike) -> None:
    """Delete one file or object (nothing when it is not there)."""
    if not is_url(path):
        Path(path).unlink(missing_ok=True)
        return
    with store_errors("delete", path):
        fs, p = filesystem(str(path))
        if fs.exists(p):
            fs.rm_file(p)


def remove_tree(folder: PathLike) -> None:
    if not is_url(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return
    with store_errors("delete", folder):
        fs, p = filesystem(str(folder))
        if fs.exists(p):
            fs.rm(p, recursive=True)


def move(src: PathLike, dst: PathLike) -> None:
    """Give the finished file `src` the name `dst`: a rename on a local disk, an upload of a local file to a store
    (the object appears whole, then the local file goes), a copy within the store then a delete (the copy appears
    whole) between two objects."""
    if not is_url(dst):
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return
    with store_errors("write", dst):
        fs, p = filesystem(str(dst))
        if is_url(src):
            fs.mv(filesystem(str(src))[1], p)
        else:
            fs.put_file(str(src), p)
            Path(src).unlink()


@contextlib.contextmanager
def upload_atomic(url: str) -> Iterator[Path]:
    """Yield a local temporary path; when the block succeeds, upload it to `url` in one go (the object appears
    whole or not at all), then remove it. The block's writer needs no knowledge of the store."""
    fd, tmp = tempfile.mkstemp(prefix=".corpusforge-", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with store_errors("write", url):
            fs, p = filesystem(url)
            fs.put_file(tmp, p)
    finally:
        Path(tmp).unlink(missing_ok=True)


_EXTRAS = {"s3": ("s3", "s3fs"), "s3a": ("s3", "s3fs"), "gs": ("gcs", "gcsfs"), "gcs": ("gcs", "gcsfs")}


def check_protocols(items: Sequence[str]) -> None:
    """Refuse (UserError, one line naming the extra to install) inputs whose URL scheme has no fsspec backend
    installed here, before any task runs: otherwise every input fails alike on the workers."""
    import fsspec

    for protocol in sorted({str(i).split("://", 1)[0] for i in items if "://" in str(i)}):
        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError:
            extra, package = _EXTRAS.get(protocol, (None, None))
            hint = f"pip install 'corpusforge[{extra}]' (installs {package})" if extra else "install its fsspec backend"
            raise UserError(f"{protocol}:// inputs need a package that is not installed: {hint}") from None
        except ValueError:
            raise UserError(f"{protocol}:// is not a protocol fsspec knows") from None
