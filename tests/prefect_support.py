"""Reading what a flow run published, on the session's shared Prefect test server."""

from __future__ import annotations


def artifacts_of(*states) -> dict:
    """The artifacts (by key) of the flow runs behind ``states``, and no other run's: the test server is shared by
    the whole session, so a key alone may find another test's artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    run_ids = [state.state_details.flow_run_id for state in states]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids)))
    return {artifact.key: artifact for artifact in found if artifact.key}


def run_log_text(state, expected: str, timeout: float = 60) -> str:
    """The INFO-and-above log lines of the flow run behind ``state`` as the UI shows them, read until ``expected``
    is among them (or ``timeout`` s): logs go to the server in batches and it stores them asynchronously, so a
    read straight after the run can come first on a loaded machine."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
            text = "\n".join(entry.message for entry in logs if entry.level >= 20)
            if expected in text or time.monotonic() > deadline:
                return text
            time.sleep(0.2)
