"""The flow task runner chosen by ``[runtime]`` per run (imported only where Prefect runs flows)."""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner

from flows.compose import configured_task_runner


class ConfiguredTaskRunner(ThreadPoolTaskRunner):
    """A flow's ``task_runner`` that reads ``[runtime]`` when a run starts, not when the module is imported: Prefect
    enters ``flow.task_runner.duplicate()`` for every run, and this duplicate is the configured runner. (A
    deployment's worker imports the flow once; the policy file decides per run.)"""

    def duplicate(self):
        return configured_task_runner()
