"""The billing exporter's config: sources, budget, growth phases, recommendations; strictly checked."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from common.config import SecretFile, Strict
from common.durations import Duration
from common.postgres import PgConnection

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_URL = re.compile(r"^https?://[^/\s@]+")
Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]


class _Source(Strict):
    # The `source` label.
    name: str
    # "Stopped delivering" once the newest charge period received ended longer ago than this.
    # Vercel and OpenAI report a day within a day; monthly invoices dropped in a folder need ~40d.
    max_data_age: Duration = 259200.0

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} must match {_NAME.pattern}")
        return value


class _Api(_Source):
    base_url: str
    # Read at start (common.cli) and again whenever the file changes, so a rotated token needs
    # no restart.
    token_file: SecretFile
    timeout: Duration = 30.0

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not _URL.match(value):
            raise ValueError(f"{value!r} must be an http(s) URL without credentials")
        return value.rstrip("/")


class VercelCharges(_Api):
    """GET /v1/billing/charges (FOCUS 1.3 JSONL) for one team."""

    name: str = "vercel"
    base_url: str = "https://api.vercel.com"
    team_id: str | None = None


class OpenAICosts(_Api):
    """GET /v1/organization/costs (daily buckets) with an Admin API key."""

    name: str = "openai"
    base_url: str = "https://api.openai.com"


class FocusFolder(_Source):
    """FOCUS CSV or JSONL files (optionally .gz) dropped in a folder: AWS, GCP, Azure, Supabase
    invoices typed up as FOCUS rows. Each file, or each sub-folder of files (a multi-part
    export), is one delivery; for each provider and day the newest delivery wins."""

    path: Path
    max_data_age: Duration = 3456000.0  # 40 days: monthly invoices


class Phase(Strict):
    name: str
    # Upper bound of active users (30-day) for this phase; null for the last, open-ended one.
    max_users: Annotated[int, Field(gt=0)] | None
    # The plan's monthly cost for the phase; null where the plan says "custom".
    monthly_budget_usd: Money | None
    services: list[str] = Field(default_factory=list)


def _spec_phases() -> list[Phase]:
    # The spec's Scaling Strategy / Cost Optimization Strategy.
    return [
        Phase(
            name="Phase 1",
            max_users=1000,
            monthly_budget_usd=Decimal(500),
            services=["Vercel Pro", "Supabase Pro"],
        ),
        Phase(
            name="Phase 2",
            max_users=5000,
            monthly_budget_usd=Decimal(2000),
            services=["Vercel Pro", "Supabase Team", "Redis cache"],
        ),
        Phase(
            name="Phase 3",
            max_users=20000,
            monthly_budget_usd=Decimal(10000),
            services=["Vercel Enterprise", "Supabase Business"],
        ),
        Phase(
            name="Phase 4",
            max_users=None,
            monthly_budget_usd=None,
            services=["Custom infrastructure", "dedicated support"],
        ),
    ]


class Recommendations(Strict):
    # Tag whose value says production / preview / development (Vercel's tag keys are not
    # documented; set what your export carries). Without it the preview rule is off.
    environment_tag: str | None = "Environment"
    # Preview deployments should cost at most this share of a provider's usage.
    max_preview_share: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.2")
    # A service whose cost grew this much more than its consumption (unit price went up).
    max_price_growth: Annotated[Decimal, Field(gt=0)] = Decimal("0.25")
    # Recommendations saving less than this a month are not worth anyone's time.
    min_saving_usd: Money = Decimal(10)


class CostTracking(PgConnection):
    """Where the scheduled job writes the spec's cost_tracking table (the recorder's database):
    a conninfo without the password, `password_file` read at each connection (a rotated password
    needs no restart) and `statement_timeout` (10s); each write is one short connection."""

    # usage_tier per provider (e.g. vercel: pro); optional.
    tiers: dict[str, str] = Field(default_factory=dict)


class BillingConfig(Strict):
    # Only USD: the metric names say _usd and no exchange rates are applied. Rows billed in
    # another currency are rejected (counted), never summed.
    currency: str = "USD"
    monthly_budget_usd: Money = Decimal(500)
    phases: list[Phase] = Field(default_factory=_spec_phases)
    # Costs change daily; hourly polling is ample and far inside every vendor's limits.
    refresh_interval: Duration = 3600.0
    # Each refresh re-reads this many whole months before the current one (restatements of
    # last month arrive in the first days of this one, and MoM needs it). At most 11: Vercel
    # answers at most a year per request.
    months_back: Annotated[int, Field(ge=1, le=11)] = 1
    top_services: Annotated[int, Field(ge=1, le=50)] = 10
    vercel: VercelCharges | None = None
    openai: OpenAICosts | None = None
    folders: list[FocusFolder] = Field(default_factory=list)
    recommendations: Recommendations = Field(default_factory=Recommendations)
    cost_tracking: CostTracking | None = None

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if value != "USD":
            raise ValueError("only USD is supported (no exchange rates are applied)")
        return value

    @model_validator(mode="after")
    def _check(self) -> BillingConfig:
        names = [s.name for s in self.sources()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate source names: {', '.join(dupes)}")
        if not names:
            raise ValueError("configure at least one source: vercel, openai or folders")
        bounds = [p.max_users for p in self.phases]
        if not self.phases or bounds[-1] is not None or None in bounds[:-1]:
            raise ValueError("phases: every phase but the last needs max_users; the last has none")
        if any(a >= b for a, b in itertools.pairwise(bounds[:-1])):  # type: ignore[operator]
            raise ValueError("phases: max_users must increase")
        return self

    def sources(self) -> list[_Source]:
        return [s for s in (self.vercel, self.openai) if s is not None] + list(self.folders)
