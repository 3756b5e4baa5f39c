"""Flows renamed in 0.2, under their old names until 0.3, so anything that triggers them by name keeps working.

A Prefect deployment is addressed as ``FLOW/DEPLOYMENT``; renaming a flow changes that address. These copies run
the renamed flow's own code under the old flow name (``Flow.with_options``); prefect.yaml deploys each under its
old deployment name, on demand only (the schedules are on the new deployments). Remove this module in 0.3.
"""

from __future__ import annotations

from flows.fulfilment import fulfilment_handoff
from flows.intake import intake_orders, intake_phone_order

RENAMED = {  # old flow name -> the flow it now is
    "ingest-orders": intake_orders,
    "enter-phone-order": intake_phone_order,
    "fulfill-orders": fulfilment_handoff,
}

ingest_orders = intake_orders.with_options(name="ingest-orders")
enter_phone_order = intake_phone_order.with_options(name="enter-phone-order")
fulfill_orders = fulfilment_handoff.with_options(name="fulfill-orders")
