"""Batch loading of reference data (catalog, customers) as Prefect tasks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from yidi.db import get_engine
from yidi.reference import prepare_catalog, prepare_customers, upsert_catalog, upsert_customers
from yidi.steps import NO_CACHE, task
from yidi.textfiles import read_table


@task(cache_policy=NO_CACHE)
def load_catalog(source: Path | pd.DataFrame) -> int:
    """Upsert the catalog from a file or a DataFrame in the loader's columns; returns rows new or changed."""
    frame = read_table(source) if isinstance(source, Path) else source
    prepared = prepare_catalog(frame, str(source) if isinstance(source, Path) else "catalog")
    with get_engine().begin() as conn:
        return upsert_catalog(conn, prepared)


@task(cache_policy=NO_CACHE)
def load_customers(source: Path | pd.DataFrame) -> int:
    """Upsert customers from a file or a DataFrame in the loader's columns; returns rows new or changed."""
    frame = read_table(source) if isinstance(source, Path) else source
    prepared = prepare_customers(frame, str(source) if isinstance(source, Path) else "customers")
    with get_engine().begin() as conn:
        return upsert_customers(conn, prepared)
