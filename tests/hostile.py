"""Hostile inputs for the hardening tests, built small on disk from their compressed form (a bomb is never held
uncompressed), and a way to run a stage's per-file task in a fresh process and read its peak memory."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30
_MIB_ZEROS = bytes(1 << 20)


def bomb_bytes(codec: str, size: int = GIB, byte: bytes = b"\0") -> bytes:
    """`size` bytes of `byte` compressed with `codec`, built a MiB at a time (concatenated streams for the codecs
    that allow them, so even bzip2's is a few KB)."""
    mib = _MIB_ZEROS if byte == b"\0" else byte * (1 << 20)
    n = size >> 20
    if codec == "gzip":
        return gzip.compress(mib, 9) * n
    if codec == "bz2":
        return bz2.compress(mib, 9) * n
    if codec == "xz":
        return lzma.compress(mib) * n
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=19).compress(mib) * n
    if codec == "br":
        import brotli

        out = brotli.Compressor(quality=1)
        return b"".join(out.process(mib) for _ in range(n)) + out.finish()
    raise ValueError(codec)


def epub_bomb(path: Path, size: int = GIB) -> Path:
    """An EPUB (a zip) whose one manifest item is `size` zero bytes, deflated to about a thousandth of that."""
    with zipfile.ZipFile(path, "w", compresslevel=1) as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        info = zipfile.ZipInfo("OEBPS/zeros.xhtml")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as entry:
            for _ in range(size >> 20):
                entry.write(_MIB_ZEROS)
    return path


def run_measured(code: str, timeout: float = 300) -> tuple[Any, int]:
    """Run `code` in a fresh Python process (this tree first on the path); it assigns its answer to `result`.
    Returns (result, that process's peak resident memory in MiB)."""
    # VmHWM is this process image's own peak; ru_maxrss would also count the parent's memory at fork (Linux keeps
    # the pre-exec high-water mark), so a child of a large test process would report the parent's size.
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json as _json, re as _re
        _hwm = _re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())
        print("RESULT " + _json.dumps({"result": result, "rss": int(_hwm.group(1)) // 1024}, default=str))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    answer = json.loads(lines[-1][len("RESULT "):])
    return answer["result"], answer["rss"]
