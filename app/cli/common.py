"""What every area's commands share: the root Typer app, the console, errors with exit codes, JSON output and the
store check. The area modules (``app/cli/<area>.py``) register on ``cli``; ``app/cli/main.py`` imports them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console

from yidi.workdays import BUSINESS_TZ

cli = typer.Typer(
    help="yidi: remote-order operations (異地訂單) for Chongqing enterprises.", no_args_is_help=True
)

console = Console()
EXIT_NOT_FOUND, EXIT_CONFIG, EXIT_DATABASE = 1, 3, 4


@cli.callback()
def _before_every_command() -> None:
    """The policy file is validated before any command runs (README: "validated at start-up"): a bad or
    undecodable file stops every command the same way, exit 3, instead of failing later inside a step."""
    from yidi.settings import SettingsError, reload_settings

    try:
        reload_settings()  # read afresh: this command's policy file, as it is now
    except SettingsError as exc:
        raise fail(f"invalid policy: {exc}", EXIT_CONFIG) from None


def fail(message: str, code: int = EXIT_NOT_FOUND) -> typer.Exit:
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def emit_json(payload) -> None:
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n")


def engine_or_exit():
    """The order store's engine, or exit 4: "cannot be reached" when no connection opens (the hint is about the
    database), "not initialised" when it answers but has no schema (the hint is `yidi init`)."""
    from yidi.db import get_engine

    engine = get_engine()
    conn = store_connection_or_exit(engine)
    try:
        conn.exec_driver_sql("SELECT 1 FROM orders WHERE 1 = 0")
    except Exception as exc:  # noqa: BLE001 - OperationalError (SQLite) / ProgrammingError (PostgreSQL): no tables
        raise fail(f"the order store at {safe_url(engine.url)} is not initialised ({_first_line(exc)}); "
                   "run `yidi init`", EXIT_DATABASE) from None  # fmt: skip
    finally:
        conn.close()
    return engine


def store_connection_or_exit(engine):
    """An open connection to the store, or exit 4 saying the database cannot be reached (not `yidi init`)."""
    try:
        return engine.connect()
    except Exception as exc:  # noqa: BLE001 - the driver's own error (refused, unknown host, bad login, no file)
        raise fail(f"the order store at {safe_url(engine.url)} cannot be reached: {_first_line(exc)}\n"
                   "check YIDI_DATABASE_URL (or YIDI_HOME for the embedded store) and that the database is up",
                   EXIT_DATABASE) from None  # fmt: skip


def safe_url(url) -> str:
    """A database URL as it may be shown: the password masked."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(str(url) if not hasattr(url, "render_as_string") else url).render_as_string(
            hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy understands: show nothing of it
        return "(the configured database)"


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


LIMIT_HELP = "At most this many rows (the footer says how many there are)"


def shown_of_total(shown: int, total: int, order: str) -> str:
    """The footer of a long list (issue 15: `cases list` printed ~100 rows with no count):
    ``50 of 312, newest first; --limit 312 for all``."""
    more = f"; --limit {total} for all" if total > shown else ""
    return f"{shown} of {total}, {order}{more}"


def local_time(value, missing: str = "") -> str:
    """A stored (UTC) time as staff read it: Asia/Shanghai, ``YYYY-MM-DD HH:MM``; ``missing`` when there is none."""
    if value is None or pd.isna(value):
        return missing
    return pd.Timestamp(value).tz_convert(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")


# --- files named on the command line ---------------------------------------------------------------------------


def regular_file(path, what: str = "file"):
    """``path`` when it is a regular file; else a refusal (exit 1). Devices, FIFOs and directories are refused
    before anything opens them: reading /dev/zero never ends and opening a FIFO blocks until a writer comes."""
    import os
    import stat
    from pathlib import Path

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise fail(f"{path}: no such {what}") from None
    except OSError as exc:
        raise fail(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise fail(f"{path} is not a regular file")
    return path


# --- where flows run: a Prefect server when there is one, else in this process -----------------------------------

PREFECT_OPTION_HELP = (
    "Run as a Prefect flow run on the configured server (PREFECT_API_URL, or the local one from `make up`), or "
    "--no-prefect: the same steps in this process. Default: Prefect when a server is configured or answers, "
    "else in this process. yidi never starts a temporary Prefect server."
)


def prefect_server_url() -> str | None:
    """The Prefect API this command would report to, without importing Prefect: ``PREFECT_API_URL`` (the
    environment, else the active Prefect profile), else the local server of `make up` when it answers."""
    import os

    configured = os.environ.get("PREFECT_API_URL") or _configured_api_url()
    if configured:
        return configured
    from app.local_stack import HOST, api_url, port

    return api_url() if _port_open(HOST, port()) else None


def _configured_api_url() -> str | None:
    import os
    import tomllib
    from pathlib import Path

    if "prefect.settings" in sys.modules:  # Prefect already loaded (tests, the demo): ask it
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value() or None
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    try:
        profiles = tomllib.loads((Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml"))
                                  .expanduser()).read_text(encoding="utf-8"))  # fmt: skip
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "")
    return (profiles.get("profiles", {}).get(active, {}) or {}).get("PREFECT_API_URL") or None


def _port_open(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _server_answers(url: str, timeout: float = 3.0) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as answer:  # noqa: S310 - the operator's own server
            return answer.status == 200
    except (OSError, ValueError, urllib.error.URLError):
        return False


def use_prefect(choice: bool | None) -> bool:
    """Whether a flow command runs as a Prefect flow run. ``choice``: ``--prefect`` (True), ``--no-prefect``
    (False) or neither (None: Prefect when a server is configured or the local one answers).

    Never a temporary server: Prefect would start one per command (~20 s, two at once time out connecting to each
    other, and a killed command leaves it running), so a Prefect run needs a real server, checked here (exit 4).
    """
    import os

    if choice is False:
        return False
    url = prefect_server_url()
    if url is None:
        if choice:
            raise fail("no Prefect server: start one with `make up` or set PREFECT_API_URL "
                       "(or leave out --prefect to run in this process)", EXIT_DATABASE)  # fmt: skip
        return False
    if not _server_answers(url):
        raise fail(f"the Prefect server at {url} does not answer (PREFECT_API_URL); start it, or run in this "
                   "process with --no-prefect", EXIT_DATABASE)  # fmt: skip
    if "prefect.settings" not in sys.modules:  # Prefect reads these when this command first imports it
        os.environ["PREFECT_API_URL"] = url
        os.environ["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "false"  # belt and braces: never a temporary server
    logging.getLogger("prefect").setLevel(logging.WARNING)
    return True


# --- options and times every area's commands share -----------------------------------------------------------

JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
AsOf = Annotated[datetime | None, typer.Option(help="Act as if it were this time (Beijing time unless a zone)")]
PrefectChoice = Annotated[bool | None, typer.Option("--prefect/--no-prefect", help=PREFECT_OPTION_HELP)]


def aware_now(as_of: datetime | None) -> datetime:
    """Now, or ``--as-of`` read as Beijing time when it carries no zone."""
    from yidi.bulk import utc_now

    if as_of is None:
        return utc_now()
    return as_of if as_of.tzinfo else as_of.replace(tzinfo=BUSINESS_TZ)


UNMASKED_HELP = ("Names, phones and addresses in full (operations, manager or auditor role; recorded in "
                 "`yidi access log`)")  # fmt: skip


def personal_data_view(engine, unmasked: bool, who: str, action: str, subject: str, people: int = 1):
    """Issue 20: personal fields stay masked unless ``--unmasked``, which needs a role (refused: exit 1, nothing
    shown), writes one access record and says so on stderr (stdout stays machine-readable). Returns the actor or
    None (masked: nothing recorded)."""
    if not unmasked:
        return None
    from yidi.access_log import record_access
    from yidi.settings import get_settings
    from yidi.staff import NotPermitted, act_as

    try:
        actor = act_as(get_settings().staff, "unmasked", who)
    except NotPermitted as exc:
        raise fail(f"{exc} (nothing shown)") from None
    with engine.begin() as conn:
        record_access(conn, actor.text, action, subject, people, listed=actor.listed)
    Console(stderr=True).print(f"UNMASKED personal data, recorded as {actor.text} (yidi access log)", highlight=False,
                               markup=False)  # fmt: skip
    return actor
