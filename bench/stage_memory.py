"""What a Dask worker needs per stage: every stage of the sample recipe (`make corpus`'s), each on a fresh
LocalCluster of 2 worker processes (resetting VmHWM is not possible everywhere), the workers' peak resident memory
(VmHWM) against an idle worker's.

    .venv/bin/python -m bench.stage_memory

The sample is small, so these are the fixed part of each stage's need (the worker, its libraries, one input at a
time); docs/cluster.md's table says what grows with the input. Runs in a temporary folder; writes
bench/results/stage_memory.json.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from rich.console import Console

from bench.timing import peak_rss_kib
from corpusforge import recipe as recipe_mod
from corpusforge.pipeline import run_recipe
from corpusforge.runtime import dask_client

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "stage_memory.json"


def main() -> dict:
    quiet = Console(file=io.StringIO())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ROOT / "pipelines" / "sample.toml", Path(tmp) / "sample.toml")
        os.chdir(tmp)  # the recipe's relative paths land in the temporary folder
        rec = recipe_mod.load(Path(tmp) / "sample.toml")
        for stage, _ in rec.stage_configs():
            with dask_client(workers=2) as client:
                client.wait_for_workers(2)
                idle = max(client.run(peak_rss_kib).values()) / 1024
                run_recipe(rec, only=[stage.name], console=quiet, client=client)
                peak = max(client.run(peak_rss_kib).values()) / 1024
            rows.append({"stage": stage.name, "worker_peak_mib": round(peak), "above_idle_mib": round(peak - idle)})
            print(json.dumps(rows[-1]), flush=True)
    results = {"idle_worker_mib": round(idle), "stages": rows,
               "table": [{"what": "peak resident memory of a Dask worker per stage, sample recipe, 2 workers",
                          "result": ", ".join(f"{r['stage']} {r['worker_peak_mib']} MiB" for r in rows),
                          "baseline": f"idle worker {round(idle)} MiB", "ratio": ""}]}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
