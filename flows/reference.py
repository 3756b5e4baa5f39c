"""Reference data flow: load the catalog and customers from staff spreadsheets (on demand)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.naming import run_name
from flows.params import OptionalServerFile
from tasks.reference import load_catalog, load_customers
from yidi.db import init_db


@flow(name="load-reference-data", log_prints=True, flow_run_name=run_name("reference data", when="%Y-%m-%d %H:%M"))
def load_reference_data(catalog_file: OptionalServerFile = None,
                        customers_file: OptionalServerFile = None) -> dict[str, int]:
    """Upsert the catalog and/or customers from csv/xlsx files (UTF-8 or GBK, Chinese or English headers).

    Args:
        catalog_file: The catalog (商品目录) as csv/xlsx, a path the worker can read. Empty: the catalog is left as is.
        customers_file: The customers (客户档案) as csv/xlsx, a path the worker can read. Empty: left as is.
    """
    init_db()
    loaded = {}
    if catalog_file:
        loaded["catalog"] = load_catalog(Path(catalog_file))
    if customers_file:
        loaded["customers"] = load_customers(Path(customers_file))
    print(f"reference data loaded: {loaded}")
    return loaded
