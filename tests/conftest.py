"""Shared fixtures: the real data beside the project (../shared/data), skipped with a reason when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CORPUSFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: the real-data tests need it (CI has it; a user's clone may not)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set CORPUSFORGE_SHARED_DATA to its path)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dask_client():
    """One LocalCluster (2 worker processes) shared by the tests that need Dask."""
    from corpusforge.runtime import dask_client as make

    with make(workers=2) as client:
        yield client
