"""The `reconcile:` section of the API's config (api/reconcile.py runs it; docs/operator-api.md,
"Reconciliation with Alertmanager"). Its own module so that api/config.py only names it."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from common.config import Strict
from common.durations import Duration


class Reconcile(Strict):
    # False: no loop; rows of alerts that ended while silenced stay open.
    enabled: bool = True
    interval: Duration = 60.0
    # How long Alertmanager must have been without the alert before the row is resolved (or a
    # manual incident posted again). Above Prometheus's re-send delay (1 min) and a rule
    # evaluation, so an Alertmanager restart resolves nothing.
    grace: Duration = 300.0
    # Open rows read per tick (oldest first); the rest on the next ticks.
    batch_size: Annotated[int, Field(ge=1, le=10000)] = 1000
