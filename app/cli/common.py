"""What every area's commands share: the root Typer app, the console, errors with exit codes, JSON output and the
store check. The area modules (``app/cli/<area>.py``) register on ``cli``; ``app/cli/main.py`` imports them.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
import typer
from rich.console import Console

from yidi.workdays import BUSINESS_TZ

cli = typer.Typer(
    help="yidi: remote-order operations (異地訂單) for Chongqing enterprises.", no_args_is_help=True
)

console = Console()
EXIT_NOT_FOUND, EXIT_CONFIG, EXIT_DATABASE = 1, 3, 4


def fail(message: str, code: int = EXIT_NOT_FOUND) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def emit_json(payload) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n")


def engine_or_exit():
    from sqlalchemy.exc import OperationalError

    from yidi.db import get_engine

    engine = get_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1 FROM orders WHERE 1 = 0")
    except OperationalError as exc:
        raise fail(f"the order store is not ready ({exc.orig}); run `yidi init`", EXIT_DATABASE) from None
    except Exception as exc:  # noqa: BLE001 - ProgrammingError on PostgreSQL when tables are missing
        raise fail(f"the order store is not ready ({exc}); run `yidi init`", EXIT_DATABASE) from None
    return engine


def local_time(value, missing: str = "") -> str:
    """A stored (UTC) time as staff read it: Asia/Shanghai, ``YYYY-MM-DD HH:MM``; ``missing`` when there is none."""
    if value is None or pd.isna(value):
        return missing
    return pd.Timestamp(value).tz_convert(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")
