"""Onboarding commands (issue 12): ``yidi load orders FILE`` brings in existing orders from the old system.

Called from ``yidi load`` in ``app/cli/main.py`` (the one command that loads staff spreadsheets); it runs the
``import-orders`` flow's step list in this process (``flows.onboarding.order_import`` with ``in_process``).
"""

from __future__ import annotations

from pathlib import Path

from app.cli.common import console, emit_json, engine_or_exit, fail, use_prefect


def load_orders_file(path: Path, json_out: bool = False, prefect: bool | None = None) -> None:
    from flows.compose import in_process
    from flows.onboarding import order_import
    from tasks.onboarding.rules import ImportFileError

    engine = engine_or_exit()
    try:
        if use_prefect(prefect):  # the `import-orders` flow run, on the configured server
            from flows.onboarding import import_orders

            result = import_orders(file_path=str(path.resolve()))
        else:
            result = order_import(in_process, path=path, engine=engine)
    except ImportFileError as exc:
        raise fail(f"{path}: nothing imported: {exc}") from None
    if json_out:
        emit_json(result)
        return
    console.print(
        f"orders from {path}: {result['imported']} imported, {result['unchanged']} already imported (unchanged), "
        f"{result['quarantined']} quarantined; {result['shipments']} shipments",
        highlight=False,
    )
    for reason in result["reasons"]:
        console.print(f"  [yellow]quarantined[/yellow] {reason}", highlight=False)
    if result["quarantined"]:
        console.print("fix the rows and load the file again (imported orders stay as they are); the refused orders "
                      "are listed by `yidi intake quarantine list`", highlight=False)  # fmt: skip
