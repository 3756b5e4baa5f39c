"""Send the notification outbox (P2): every due email and SMS, once; failures stay visible for the next pass.

Deployed every minute (prefect.yaml); also called at the end of the review flows so customers hear promptly.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.notifications import outbox_status, send_batch_task
from yidi.db import get_engine


@flow(name="send-notifications")
def send_notifications(max_batches: int = 50) -> dict:
    """Claim, send and mark due notices batch by batch; a batch that only met a dead relay ends the pass."""
    logger = get_run_logger()
    total = {"claimed": 0, "sent": 0, "failed": 0, "gave_up": 0}
    errors: list[dict] = []
    for _ in range(max_batches):
        report = send_batch_task()
        for key in total:
            total[key] += report[key]
        errors.extend(report["errors"])
        if report["claimed"] == 0 or (report["sent"] == 0 and report["failed"] > 0):
            break
    if total["failed"] or total["gave_up"]:
        logger.warning("notifications: %s sent, %s to retry, %s given up", total["sent"], total["failed"],
                       total["gave_up"])
    if total["claimed"]:
        status = outbox_status(get_engine())
        create_table_artifact(
            key="notification-outbox",
            table=status.to_dict("records"),
            description=(f"Outbox after this pass: {total['sent']} sent, {total['failed']} will be retried, "
                         f"{total['gave_up']} given up (status failed, no retry)."),
        )
        if errors:
            create_markdown_artifact(
                key="notification-failures",
                markdown="\n".join(
                    ["| outbox id | medium | recipient | template | attempts | will retry | error |",
                     "|---|---|---|---|---|---|---|"]
                    + [f"| {e['outbox_id']} | {e['medium']} | {e['recipient']} | {e['template']} | {e['attempts']} "
                       f"| {'yes' if e['retry'] else 'no'} | {e['error'].replace('|', '/')} |" for e in errors[:50]]
                ),
                description="Notices that did not go out in this pass (recipients masked)",
            )  # fmt: skip
    return total
