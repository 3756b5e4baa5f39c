"""Flows renamed in 0.2, under their old names until 0.3, so anything that triggers them by name keeps working.

A Prefect deployment is addressed as ``FLOW/DEPLOYMENT``; renaming a flow changes that address. Each flow here
keeps an old flow name and the renamed flow's parameters, and runs the renamed flow's own function (``.fn``), so
the work is the same code, not a copy. prefect.yaml deploys each under its old deployment name, on demand only
(the schedules are on the new deployments). They are written out as functions because ``prefect deploy`` reads a
flow's parameters from its definition in the source. Remove this module in 0.3.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from flows.fulfilment import fulfilment_handoff
from flows.intake import IntakeChannel, intake_orders, intake_phone_order
from flows.params import Hours, Moment, Url


@flow(name="ingest-orders", log_prints=True)
def ingest_orders(channels: list[IntakeChannel] | None = None, files: list[str] | None = None,
                  options: dict[str, dict] | None = None) -> dict[str, dict]:
    """Renamed to ``intake-orders``; this name goes in 0.3.

    Args:
        channels: Only these channels. Empty: every channel enabled in [intake].
        files: Only these files (spreadsheet/email channels). Empty: the inbox.
        options: Per-channel overrides of the policy, e.g. {"taobao": {"api_url": "http://127.0.0.1:8601"}}.
    """
    return intake_orders.fn(channels=channels, files=files, options=options)


@flow(name="enter-phone-order", log_prints=True)
def enter_phone_order(timeout_hours: Hours = 8.0,
                      entered_by: Annotated[str, Field(max_length=100, examples=["王芳"])] = "") -> dict:
    """Renamed to ``intake-phone-order``; this name goes in 0.3.

    Args:
        timeout_hours: How long the form waits for the order to be keyed in.
        entered_by: Who keys it in (staff name, recorded with the order). Empty: asked in the form.
    """
    return intake_phone_order.fn(timeout_hours=timeout_hours, entered_by=entered_by)


@flow(name="fulfill-orders", log_prints=True)
def fulfill_orders(
    carrier_api_url: Url = None,
    supplier_api_url: Url = None,
    as_of: Moment = None,
    create_shipments: bool = True,
    send_purchase_orders: bool = True,
) -> dict:
    """Renamed to ``fulfilment-handoff``; this name goes in 0.3.

    Args:
        carrier_api_url: The carrier's shipping API. Empty: the policy's [fulfilment].carrier_api_url.
        supplier_api_url: The suppliers' purchase-order API. Empty: the policy's [fulfilment].supplier_api_url.
        as_of: Act as if it were this time (replays). Empty: now.
        create_shipments: Create waybills with the carrier (off: allocate and write documents only).
        send_purchase_orders: Send purchase orders to suppliers (off: raise them, send later).
    """
    return fulfilment_handoff.fn(carrier_api_url=carrier_api_url, supplier_api_url=supplier_api_url, as_of=as_of,
                                 create_shipments=create_shipments, send_purchase_orders=send_purchase_orders)
