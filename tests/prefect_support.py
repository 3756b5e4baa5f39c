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
