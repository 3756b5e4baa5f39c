"""The base of every policy-file section (``yidi/settings.py`` and the per-area ``*_policy.py`` modules)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # Unknown keys are typos in a policy file; refusing them beats silently ignoring a manager's rule.
    model_config = ConfigDict(extra="forbid")
