"""The Run form's parameter types (issue 15, Build 4): each deployment's parameters typed so the Prefect UI offers
choices (enumerations), checks formats (patterns) and shows examples; the descriptions come from each flow's
docstring (its Args section, which Prefect reads). A value outside them is refused before any work: by the server
for a deployment run (``enforce_parameter_schema``), by the flow's own validation otherwise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from connectors.registry import STORED_CHANNELS

DAY_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
# a month YYYY-MM, an ISO week YYYY-Www or a day YYYY-MM-DD (tasks.risk.periods.parse_period checks the calendar)
PERIOD_PATTERN = r"^\d{4}-((0[1-9]|1[0-2])|W(0[1-9]|[1-4]\d|5[0-3])|(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))$"

OrderChannel = Literal[STORED_CHANNELS]  # type: ignore[valid-type]  (orders.channel, as staff see it)

Day = Annotated[str | None, Field(pattern=DAY_PATTERN, examples=["2026-12-04"])]
Month = Annotated[str | None, Field(pattern=MONTH_PATTERN, examples=["2026-11"])]
Period = Annotated[str | None, Field(pattern=PERIOD_PATTERN, examples=["2026-11", "2026-W48", "2026-12-04"])]
Moment = Annotated[datetime | None, Field(examples=["2026-12-04T18:00:00+08:00"])]
ServerFile = Annotated[str, Field(min_length=1, examples=["/srv/yidi/inbox/orders-2026-11.xlsx"])]
OptionalServerFile = Annotated[str | None, Field(examples=["/srv/yidi/reference/catalog.xlsx"])]
Url = Annotated[str | None, Field(pattern=r"^https?://", examples=["http://127.0.0.1:8601"])]
Hours = Annotated[float, Field(gt=0, le=24 * 30, examples=[8])]
Seconds = Annotated[int, Field(ge=1, le=3600, examples=[5])]
Count = Annotated[int, Field(ge=1, examples=[50])]
OptionalCount = Annotated[int | None, Field(ge=1, examples=[500])]
