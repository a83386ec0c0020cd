"""The `escalation:` section of the API's config (api/escalation.py runs it; docs/operator-api.md,
"Escalation"). Its own module so that api/config.py only names it."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from common.config import Strict
from common.durations import Duration


class Escalation(Strict):
    # False: no loop runs; nothing is escalated (and no escalation already posted is ended).
    enabled: bool = True
    # A critical alert unacknowledged and unresolved this long after it fired is escalated.
    after: Duration = 15 * 60.0
    # How often the loop looks. An escalation is late by at most this much.
    check_interval: Duration = 30.0
    # The escalation alert's endsAt: Alertmanager stops notifying about an escalation nobody
    # ended after this long (the API gone, the row deleted), as for manual incidents.
    max_duration: Duration = 24 * 3600.0
    # At most this many alerts escalated (and as many ended) per tick: one Alertmanager call
    # each, with a bounded body; the rest follow on the next ticks.
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 100

    @model_validator(mode="after")
    def _interval_fits(self) -> Escalation:
        if self.check_interval > self.after:
            raise ValueError("escalation.check_interval must not exceed escalation.after")
        return self
