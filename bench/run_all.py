"""Run every benchmark in bench/ (each writes bench/results/<name>.json), then rebuild the README table."""

from __future__ import annotations

import pkgutil
import runpy
import sys
from pathlib import Path

from bench import report


def main(names: list[str]) -> None:
    here = Path(__file__).resolve().parent
    helpers = ("report", "run_all", "timing")
    modules = names or sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name not in helpers)
    for name in modules:
        print(f"== bench.{name}", flush=True)
        sys.argv = [f"bench.{name}"]
        runpy.run_module(f"bench.{name}", run_name="__main__")
    report.update_readme()


if __name__ == "__main__":
    main(sys.argv[1:])
