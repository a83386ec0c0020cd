"""What one scrape renders: an immutable picture of the billing job, taken on the event loop.

The job keeps changing its ledger and its sources' state; a scrape copies what it needs into
these frozen values (the figures are already immutable: each refresh builds new ones), and the
collector (metrics.py) renders only them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from exporters.billing.figures import Figures
from exporters.billing.recommendations import Recommendation

# Why a cost_tracking write failed (the `reason` label).
COST_TRACKING_REASONS = ("unavailable", "schema")


@dataclass(frozen=True, slots=True)
class SourceView:
    """One source as of the scrape."""

    name: str
    max_data_age: float
    up: bool  # its last refresh succeeded
    last_success: float | None
    refresh_seconds: float | None  # how long its last refresh (good or bad) took
    newest_data: float | None  # end of the newest charge period it delivered
    rows: int
    requests: int
    rejected: Mapping[str, int]
    errors: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class CostTrackingView:
    last_success: float | None
    errors: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Snapshot:
    monthly_budget_usd: Decimal
    sources: tuple[SourceView, ...]
    figures: Figures | None  # None until the first refresh has run
    cost_tracking: CostTrackingView | None  # None when cost_tracking is not configured
    # The current month's largest recommendations (exporters.billing.job.MAX_RECOMMENDATIONS).
    recommendations: tuple[Recommendation, ...] = ()

    @property
    def up(self) -> bool:
        """`billing_up`: every source's last refresh succeeded."""
        return all(s.up for s in self.sources)
