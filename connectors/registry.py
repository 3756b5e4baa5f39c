"""Which order channels exist and how each is built from the policy file's ``[intake]`` section.

Adding a channel = one module with a ``Connector`` subclass, one entry in ``CONNECTORS``, one settings model.
"""

from __future__ import annotations

from pathlib import Path

from connectors.base import Connector

ORDER_CHANNELS = ("taobao", "woocommerce", "email", "spreadsheet")  # pulled by the intake-orders flow
ALL_CHANNELS = (*ORDER_CHANNELS, "form")  # "form": orders keyed in the Prefect UI (phone-order flow)
# What the connectors store in orders.channel (the names staff see: `yidi order show`, review, channels, after-sales)
STORED_CHANNELS = ("taobao", "website", "email", "phone", "fax")


def _classes() -> dict[str, type[Connector]]:
    from connectors.email_orders import EmailConnector
    from connectors.phone_form import FormConnector
    from connectors.spreadsheet_orders import SpreadsheetConnector
    from connectors.taobao import TaobaoConnector
    from connectors.woocommerce import WooCommerceConnector

    return {
        "taobao": TaobaoConnector,
        "woocommerce": WooCommerceConnector,
        "email": EmailConnector,
        "spreadsheet": SpreadsheetConnector,
        "form": FormConnector,
    }


def channel_options(name: str, settings=None) -> dict:
    from yidi.settings import get_settings

    settings = settings or get_settings()
    if name == "form":
        return {}
    section = getattr(settings.intake, name)
    options = section.model_dump()
    if name == "email":
        options["processed_flag"] = (options["imap_processed_flag"] if options["source"] == "imap"
                                     else options["maildir_processed_flag"])
    return options


def build_connector(name: str, settings=None, **overrides) -> Connector:
    classes = _classes()
    if name not in classes:
        raise KeyError(f"unknown channel {name!r}; known: {', '.join(ALL_CHANNELS)}")
    options = {**channel_options(name, settings), **overrides}
    return classes[name](name=name, options=options)


def enabled_channels(settings=None) -> list[str]:
    from yidi.settings import get_settings

    settings = settings or get_settings()
    return [name for name in ORDER_CHANNELS if getattr(settings.intake, name).enabled]


def connector_for_file(path: Path, settings=None, **overrides) -> Connector:
    """A connector reading one file given on the command line (``yidi intake run --file``); it is not moved."""
    if path.suffix.lower() == ".eml":
        return build_connector("email", settings, **overrides, files=[str(path)])
    return build_connector("spreadsheet", settings, **overrides, files=[str(path)], move_processed=False)
