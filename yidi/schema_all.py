"""Imports every area's table module so ``yidi.schema.metadata`` knows all tables (exports, tests)."""

import importlib
import pkgutil

import yidi
from yidi import schema  # noqa: F401

for _module in pkgutil.iter_modules(yidi.__path__):
    if _module.name.startswith("schema_") and _module.name != "schema_all":
        importlib.import_module(f"yidi.{_module.name}")
