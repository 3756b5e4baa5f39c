"""Order intake flows (requirements I1-I4, S1).

``ingest_orders``: every configured channel (or the ones asked for, or given files) as its own task, in parallel.
A channel task works through all its batches (chunks of up to thousands of records, each committed on its own)
and is retried with exponential backoff only when it failed transiently (5xx, timeouts, throttling, malformed
answers); a wrong password or signature fails at once with a clear message. One channel failing never stops the
others, and the run ends Failed when any channel failed, Completed otherwise. A summary table artifact shows per
channel: read, new, updated, unchanged, quarantined, and remote/local/unknown.

``enter_phone_order``: a phone or fax order keyed in the Prefect UI. The run pauses with a form; the answer goes
through the same landing/validation/upsert path as every channel.
"""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput
from prefect.tasks import exponential_backoff

import yidi  # noqa: F401  (Prefect offline defaults)
from connectors.base import TransientChannelError
from connectors.phone_form import FormLine, PhoneOrder, form_record
from connectors.registry import build_connector, connector_for_file, enabled_channels
from tasks.intake.ingest import ChannelSummary, run_channel
from yidi.db import get_engine
from yidi.settings import get_settings

SUMMARY_FIELDS = ["read", "new", "updated", "unchanged", "quarantined", "cancelled", "rereview", "remote", "local",
                  "unknown", "batches"]


def retry_only_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry a channel only when it failed in a way that may pass."""
    try:
        state.result()
    except TransientChannelError:
        return True
    except Exception:  # noqa: BLE001 - anything else is permanent
        return False
    return False


@task(cache_policy=NO_CACHE, task_run_name="ingest-{channel}")
def ingest_channel(channel: str, file: str | None = None, options: dict | None = None) -> dict:
    """All batches of one channel (or one file), each committed with its cursor."""
    from pathlib import Path

    logger = get_run_logger()
    connector = connector_for_file(Path(file)) if file else build_connector(channel, **(options or {}))
    summary = run_channel(get_engine(), connector,
                          on_batch=lambda batch, counts: logger.info("%s %s: read %d, new %d, updated %d, "
                                                                     "unchanged %d, quarantined %d", channel,
                                                                     batch.label, counts.read, counts.new,
                                                                     counts.updated, counts.unchanged,
                                                                     counts.quarantined))
    logger.info("%s done: %s", channel, {k: getattr(summary, k) for k in SUMMARY_FIELDS})
    # Quarantine reasons may quote customer data: they stay in the store (`yidi quarantine list`), not in Prefect.
    return {k: v for k, v in asdict(summary).items() if k != "reasons"}


def _summary_rows(results: dict[str, dict]) -> list[dict]:
    rows = []
    for name, result in results.items():
        row = {"channel": name, **{k: result.get(k, 0) for k in SUMMARY_FIELDS}}
        row["error"] = result.get("error") or ""
        rows.append(row)
    return rows


@flow(name="ingest-orders", log_prints=True)
def ingest_orders(channels: list[str] | None = None, files: list[str] | None = None,
                  options: dict[str, dict] | None = None) -> dict[str, dict]:
    """Pull orders from the configured channels (or ``channels``), or ingest ``files`` (csv/xlsx/eml).

    ``options`` overrides policy-file settings per channel (e.g. ``{"taobao": {"url": ...}}``; no secrets: those
    stay in environment variables)."""
    logger = get_run_logger()
    settings = get_settings().intake
    runner = ingest_channel.with_options(
        retries=settings.task_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=max(settings.retry_delay_seconds, 0.001)),
        retry_jitter_factor=0.2,
        retry_condition_fn=retry_only_transient,
    )
    jobs: dict[str, tuple[str, str | None]] = {}
    if files:
        for path in files:
            jobs[f"file:{path}"] = ("email" if path.lower().endswith(".eml") else "spreadsheet", path)
    else:
        for name in channels or enabled_channels():
            jobs[name] = (name, None)
    if not jobs:
        logger.warning("no channel is enabled in [intake] and none was asked for")
    options = options or {}
    futures = {label: runner.submit(channel, file, options.get(channel)) for label, (channel, file) in jobs.items()}
    results: dict[str, dict] = {}
    for label, future in futures.items():
        future.wait()
        state = future.state
        if state.is_completed():
            results[label] = future.result()
        else:
            try:
                future.result()
                message = f"ended {state.type.value}"
            except Exception as exc:  # noqa: BLE001 - reported per channel
                message = f"{type(exc).__name__}: {exc}"
            results[label] = {**{k: v for k, v in asdict(ChannelSummary(channel=label)).items() if k != "reasons"},
                              "error": message[:500]}
            logger.error("channel %s failed: %s", label, message)
    rows = _summary_rows(results)
    totals = {k: sum(r[k] for r in rows) for k in SUMMARY_FIELDS}
    create_table_artifact(
        key="ingest-summary",
        table=rows,
        description=(
            f"Order intake: {totals['read']} record(s) read, {totals['new']} new, {totals['updated']} updated, "
            f"{totals['unchanged']} unchanged, {totals['quarantined']} quarantined "
            f"(`yidi quarantine list`). Of new/updated orders: {totals['remote']} remote, {totals['local']} local, "
            f"{totals['unknown']} unknown."
        ),
    )
    failed = {label: r["error"] for label, r in results.items() if r.get("error")}
    if failed:
        raise RuntimeError("channel(s) failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return results


# ---------------------------------------------------------------------------------------------------------------
# The phone-order form


class PhoneOrderForm(RunInput, PhoneOrder):
    """The form shown in the Prefect UI (fields of ``connectors.phone_form.PhoneOrder``)."""


FORM_HELP = """### 电话/传真订单录入 — phone or fax order

Fill in the customer, delivery address and one entry per product or service (code or name, quantity, unit price
in yuan), then **Resume**. The order goes through the same checks as every channel: a problem puts it in
quarantine with a reason (`yidi quarantine list`), nothing is lost.
"""


@flow(name="enter-phone-order", log_prints=True)
def enter_phone_order(timeout_hours: float = 8.0, entered_by: str = "") -> dict:
    """Pause with a form in the Prefect UI; ingest the answer as a 'form' channel record."""
    from prefect.flow_runs import pause_flow_run

    logger = get_run_logger()
    answer: PhoneOrderForm = pause_flow_run(
        wait_for_input=PhoneOrderForm.with_initial_data(
            description=FORM_HELP,
            customer_name="",
            phone="",
            address="",
            lines=[FormLine(item_code="", quantity=1, unit_price_yuan="0.00")],
        ),
        timeout=int(timeout_hours * 3600),
        poll_interval=2,  # staff wait for the answer: check for the resumed form often
    )
    data = PhoneOrder.model_validate(answer.model_dump(include=set(PhoneOrder.model_fields)))
    records = form_record(data, entered_by=entered_by)
    connector = build_connector("form", records=records)
    summary = run_channel(get_engine(), connector)
    result = {k: getattr(summary, k) for k in SUMMARY_FIELDS} | {
        "order_no": records["source_key"].iloc[0],
    }
    status = "quarantined" if summary.quarantined else "accepted"
    create_markdown_artifact(
        key="phone-order",
        markdown=f"Phone order **{result['order_no']}**: {status}"
        + (" — see `yidi quarantine list --channel form` for the reason" if summary.quarantined else ""),
    )
    logger.info("phone order %s %s", result["order_no"], status)
    return result | {"status": status}


@flow(name="intake-demo", log_prints=True)
def intake_demo(order_count: int = 3000) -> dict[str, dict]:
    """``make demo``'s intake stage: every channel's stand-in with demo orders and bad records, then
    ``ingest-orders`` as a subflow. Quarantined records are then listed by ``yidi quarantine list``."""
    from connectors.registry import ORDER_CHANNELS
    from demo.standins.intake_demo import intake_standins

    with intake_standins(order_count) as options:
        return ingest_orders(channels=list(ORDER_CHANNELS), options=options)
