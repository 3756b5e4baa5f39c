"""The ``[runtime]`` section of the policy file: how a flow run's concurrent steps run (issue 17)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from yidi.policy_base import Section


class RuntimePolicy(Section):
    """How a flow run's concurrent steps (a stage's chunks) run (issue 17): not a business rule, but an operator's
    choice when scaling out, so it sits in the same file and is validated the same way."""

    task_runner: Literal["thread", "dask"] = Field(
        "thread", description="thread: in the flow run's process; dask: on a Dask cluster (prefect-dask)"
    )
    thread_workers: int = Field(4, ge=1, le=64, description="Chunks in flight at once with the thread runner")
    dask_address: str = Field("", description="tcp://host:8786 of a running Dask scheduler; empty: a local cluster")
    dask_workers: int = Field(2, ge=1, le=64, description="Processes of the local Dask cluster (no dask_address)")
